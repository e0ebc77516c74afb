"""A Twilio-compatible fake SMS provider (what Mailpit is for e-mail, for SMS).

It speaks the subset of Twilio's 2010-04-01 REST API Pigeon uses, keeps every
accepted message in an in-memory inbox, sends signed status callbacks, and
injects latency, errors, rate limiting and outages on demand::

    faults.py      FaultConfig (validated) and the seeded FaultInjector
    store.py       the inbox of accepted messages and the counters
    resources.py   Twilio-shaped JSON: message resources and error bodies
    callbacks.py   signed StatusCallback delivery in background tasks
    twilio_api.py  /2010-04-01/... routes
    control_api.py /sandbox/... routes (inbox, stats, faults)
    app.py         wiring of one aiohttp application
    server.py      SandboxServer and run_sandbox() for the CLI
"""

from pigeon.sandbox.faults import FaultConfig
from pigeon.sandbox.server import SandboxServer, run_sandbox

__all__ = ["FaultConfig", "SandboxServer", "run_sandbox"]
