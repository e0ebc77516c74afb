"""A Twilio-compatible fake SMS provider (what Mailpit is for e-mail, for SMS).

It speaks the subset of Twilio's 2010-04-01 REST API Pigeon uses, keeps every
accepted message in an in-memory inbox, sends signed status callbacks, and
injects latency, errors by Twilio code, rate limiting, outages, hung and
dropped connections and lying callbacks on demand (docs/sandbox.md)::

    faults.py      FaultConfig (validated) and the seeded FaultInjector
    store.py       the inbox of accepted messages and the counters
    resources.py   Twilio-shaped JSON: message resources and error bodies
    callbacks.py   signed StatusCallback delivery in background tasks
    forgery.py     callbacks built to order (bad signature, unknown message, ...)
    twilio_api.py  /2010-04-01/... routes
    control_api.py /sandbox/... routes (inbox, stats, faults, forged callbacks)
    webhook_receiver.py /sandbox/webhooks/{name}: a status webhook receiver with faults
    app.py         wiring of one aiohttp application
    server.py      SandboxServer and run_sandbox() for the CLI
"""

from pigeon.sandbox.faults import FaultConfig, parse_fault_config
from pigeon.sandbox.server import SandboxServer, run_sandbox

__all__ = ["FaultConfig", "SandboxServer", "parse_fault_config", "run_sandbox"]
