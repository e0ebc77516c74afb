"""The two hot routes, served without the framework on their happy path.

Every SMS costs the API three requests: its ``POST /v1/notifications`` and two
provider status callbacks. Through FastAPI's routing, dependency solving and
exception machinery each costs about as much CPU as the whole bare-echo
baseline. This ASGI middleware answers the ordinary case of both routes
directly: a JSON send request with a known API key and no ``Idempotency-Key``
that validates, and a callback whose signature is good. Anything else - a bad
body, an unknown key, an idempotent retry, a bad signature - is handed, body
and all, to the FastAPI application, which answers it exactly as before; the
fast path changes nothing before it is sure it will answer.

Validation is the same: the body is parsed and checked with the route's own
:class:`~pigeon.api.schemas.SendNotification` model and
:func:`~pigeon.api.accepting.new_notification`, and the answer is built by
:func:`~pigeon.api.accepting.accepted_answer`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
import pydantic
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pigeon import tracing
from pigeon.api.accepting import accepted_answer, new_notification
from pigeon.api.account_limits import ACCOUNT_SCOPE_KEY, QuotaGuard
from pigeon.api.problems import store_unavailable
from pigeon.api.schemas import SendNotification
from pigeon.errors import PigeonError, StoreUnavailable
from pigeon.providers.twilio_reports import callback_refusal, report_from_callback
from pigeon.store.sql_store import SqlStore

log = logging.getLogger(__name__)

NOTIFICATIONS_PATH = "/v1/notifications"
_JSON = b"application/json"
#: checks a callback's signature: (query string, params, X-Twilio-Signature) -> valid
SignatureCheck = Callable[[str, dict[str, str], str], bool]
_Handler = Callable[[Scope, dict[bytes, bytes], bytes, Send], Awaitable[bool]]


class FastPath:
    """ASGI middleware: the happy path of the send and status-callback routes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: SqlStore,
        status_path: str,
        signature_ok: SignatureCheck,
        max_bytes: int,
        quota: QuotaGuard | None = None,
    ) -> None:
        self.app = app
        self._store = store
        self._quota = quota
        self._signature_ok = signature_ok
        self._max_bytes = max_bytes
        self._routes: dict[str, _Handler] = {
            NOTIFICATIONS_PATH: self._send,
            status_path: self._callback,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        handler = (
            self._routes.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if handler is None:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of a repeated header, as Starlette reads
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self._max_bytes:
            await self.app(scope, receive, send)  # the size limit answers 413
            return
        chunks, more = await _read(receive, self._max_bytes)
        body = b"".join(chunks)
        if not more and await handler(scope, headers, body, send):
            return
        await self.app(scope, _replay(chunks, more, receive), send)

    async def _send(
        self, scope: Scope, headers: dict[bytes, bytes], body: bytes, send: Send
    ) -> bool:
        content_type = headers.get(b"content-type", b"")
        scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if (
            content_type.split(b";", 1)[0].strip().lower() != _JSON
            or b"idempotency-key" in headers
            or scheme.lower() != "bearer"
            or not key.strip()
        ):
            return False
        try:
            # authenticated already by the rate limit middleware, if it runs (the same key)
            account = scope.get(ACCOUNT_SCOPE_KEY) or await self._store.authenticate(key.strip())
            if account is None:
                return False
            # the framework's own parser: orjson would read some bodies differently
            # (an integer past 64 bits as a float), and validation must not differ
            data = json.loads(body)
            if not isinstance(data, dict):
                return False
            notification = new_notification(SendNotification.model_validate(data), account.id)
            if account.limits is not None and self._quota is not None:
                await self._quota.admit(account, notification.segments)
        except (ValueError, RecursionError, pydantic.ValidationError, PigeonError):
            return False  # the framework explains it (a quota exceeded too)
        answer = orjson.dumps(accepted_answer(notification))
        try:
            if tracing.ENABLED or b"traceparent" in headers:
                await tracing.traced_accept(self._store.accept, notification, headers)
            else:
                await self._store.accept(notification)
        except StoreUnavailable as exc:
            log.error("store unavailable: %s", exc)
            await store_unavailable()(scope, _nothing, send)
            return True
        location = f"{NOTIFICATIONS_PATH}/{notification.id}".encode()
        await _respond(send, 202, answer, [(b"content-type", _JSON), (b"location", location)])
        return True

    async def _callback(
        self, scope: Scope, headers: dict[bytes, bytes], body: bytes, send: Send
    ) -> bool:
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        query = scope.get("query_string", b"").decode("latin-1")
        signature = headers.get(b"x-twilio-signature", b"").decode("latin-1")
        if not self._signature_ok(query, params, signature) or callback_refusal(params):
            return False
        report = report_from_callback(params)
        if tracing.ENABLED or "traceparent=" in query:  # the sender's, in the callback URL
            report = tracing.traced_report(report, query)
        try:
            if not await self._store.record_delivery_report(report):
                log.info("status callback for a message id we have not recorded yet; kept")
        except StoreUnavailable as exc:
            log.error("store unavailable: %s", exc)
            await store_unavailable()(scope, _nothing, send)
            return True
        await _respond(send, 200, b"", [])
        return True


async def _read(receive: Receive, limit: int) -> tuple[list[bytes], bool]:
    """The body's chunks, and whether more is left (stopped past ``limit``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return chunks, True  # a disconnect: let the framework see it
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if not more or size > limit:
            return chunks, more or size > limit


def _replay(chunks: list[bytes], more: bool, receive: Receive) -> Receive:
    """A ``receive`` that gives the chunks read so far again, then the rest."""
    pending = list(chunks) or [b""]

    async def replay() -> Message:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or more}
        return await receive()

    return replay


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _nothing() -> Message:
    return {"type": "http.disconnect"}  # a response never reads the request
