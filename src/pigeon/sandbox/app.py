"""Wiring: one aiohttp application holding the sandbox's state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from pigeon.sandbox.callbacks import CallbackDispatcher
from pigeon.sandbox.control_api import ControlApi
from pigeon.sandbox.faults import FaultInjector
from pigeon.sandbox.resources import problem, twilio_error
from pigeon.sandbox.store import Inbox, SandboxStats
from pigeon.sandbox.twilio_api import TwilioApi
from pigeon.sandbox.webhook_receiver import WebhookReceiver

# Twilio caps a form at far less; this keeps a runaway client from filling memory.
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(slots=True)
class SandboxState:
    """Everything the routes share."""

    account_sid: str
    auth_token: str
    inbox: Inbox
    stats: SandboxStats
    faults: FaultInjector
    callbacks: CallbackDispatcher
    #: set while the server stops, so requests held by a "timeout" fault let go
    closing: asyncio.Event = field(default_factory=asyncio.Event)


#: Twilio's codes for the HTTP errors aiohttp raises itself (unknown path, wrong method)
_TWILIO_CODES = {404: 20404, 405: 20004}


@web.middleware
async def _errors_in_our_shapes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (no route, wrong method, body too large) in the routes' shapes.

    Its plain-text answers would surprise a Twilio client and the control API's users.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if request.path.startswith("/sandbox/"):
            return problem(exc.status, exc.reason, f"{request.method} {request.path}: {exc.reason}")
        code = _TWILIO_CODES.get(exc.status, 20001)
        return twilio_error(exc.status, code, f"{exc.reason}: {request.method} {request.path}")


def build_app(state: SandboxState) -> web.Application:
    """The aiohttp application serving the Twilio API and the ``/sandbox`` routes."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_errors_in_our_shapes])
    twilio = TwilioApi(
        account_sid=state.account_sid,
        auth_token=state.auth_token,
        inbox=state.inbox,
        stats=state.stats,
        faults=state.faults,
        callbacks=state.callbacks,
        closing=state.closing,
    )
    control = ControlApi(
        inbox=state.inbox, stats=state.stats, faults=state.faults, callbacks=state.callbacks
    )
    app.add_routes(twilio.routes())
    app.add_routes(control.routes())
    # status webhooks' receiver (/sandbox/webhooks/{name})
    app.add_routes(WebhookReceiver(state.closing).routes())
    return app
