"""The Twilio-compatible routes: create, fetch and list Messages."""

from __future__ import annotations

import asyncio
import base64
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from pigeon.domain.phone import normalize_e164
from pigeon.domain.segments import count_segments
from pigeon.errors import InvalidPhoneNumber
from pigeon.sandbox.callbacks import CallbackDispatcher
from pigeon.sandbox.faults import Fault, FaultInjector
from pigeon.sandbox.resources import (
    API_PREFIX,
    json_response,
    message_resource,
    new_message_sid,
    twilio_error,
)
from pigeon.sandbox.store import Inbox, SandboxStats, StoredMessage

MAX_BODY_CHARS = 1600
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class TwilioApi:
    """Handlers for ``/2010-04-01/Accounts/{AccountSid}/Messages...``."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        inbox: Inbox,
        stats: SandboxStats,
        faults: FaultInjector,
        callbacks: CallbackDispatcher,
    ) -> None:
        self._account_sid = account_sid
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        # Compared whole, in constant time: no per-request decoding on the hot path.
        self._expected_auth = f"Basic {credentials}".encode()
        self._inbox = inbox
        self._stats = stats
        self._faults = faults
        self._callbacks = callbacks

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        return [
            web.post(f"{API_PREFIX}/{{account_sid}}/Messages.json", self.create_message),
            web.get(f"{API_PREFIX}/{{account_sid}}/Messages.json", self.list_messages),
            web.get(f"{API_PREFIX}/{{account_sid}}/Messages/{{sid}}.json", self.fetch_message),
        ]

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").encode()
        path_ok = request.match_info["account_sid"] == self._account_sid
        return hmac.compare_digest(given, self._expected_auth) and path_ok

    def _unauthorized(self) -> web.Response:
        self._stats.unauthorized += 1
        return twilio_error(
            401, 20003, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
        )

    async def create_message(self, request: web.Request) -> web.Response:
        """``POST Messages.json``: validate, maybe inject a fault, accept with 201."""
        try:  # read the request before any injected latency: a client may go away meanwhile
            form = await request.post()
        except ConnectionError:
            return web.Response(status=400)
        latency = self._faults.latency_seconds
        if latency:
            await asyncio.sleep(latency)
        fault = self._faults.pick()
        if fault is Fault.DOWN:
            self._stats.count_fault(fault.value)
            return twilio_error(503, 20503, "Service Unavailable")
        if not self._authorized(request):
            return self._unauthorized()
        if fault is Fault.SERVER_ERROR:
            self._stats.count_fault(fault.value)
            return twilio_error(500, 20500, "An internal server error has occurred")
        if fault is Fault.RATE_LIMITED:
            self._stats.count_fault(fault.value)
            return twilio_error(
                429,
                20429,
                "Too Many Requests",
                headers={"Retry-After": "1"},
            )
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        invalid = _validate(fields)
        if invalid is not None:
            self._stats.rejected_invalid += 1
            return invalid
        now = datetime.now(UTC)
        body = fields["Body"]
        message = StoredMessage(
            sid=new_message_sid(),
            account_sid=self._account_sid,
            to=normalize_e164(fields["To"], "To"),
            from_=fields["From"],
            body=body,
            num_segments=count_segments(body).segments,
            date_created=now,
            date_updated=now,
            date_sent=now,
            status_callback=fields.get("StatusCallback") or None,
        )
        self._inbox.add(message)
        self._stats.accepted += 1
        response = json_response(message_resource(message), status=201)
        self._callbacks.schedule(message, fails=self._faults.delivery_fails())
        return response

    async def fetch_message(self, request: web.Request) -> web.Response:
        """``GET Messages/{Sid}.json``."""
        if not self._authorized(request):
            return self._unauthorized()
        message = self._inbox.get(request.match_info["sid"])
        if message is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return json_response(message_resource(message))

    async def list_messages(self, request: web.Request) -> web.Response:
        """``GET Messages.json``: newest first, filtered by To, From and DateSent, paged."""
        if not self._authorized(request):
            return self._unauthorized()
        query = request.query
        try:
            page_size = min(int(query.get("PageSize", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE)
            page = int(query.get("Page", 0))
            if page_size < 1 or page < 0:
                raise ValueError("PageSize must be at least 1 and Page at least 0")
            matches = list(_filter(self._inbox.newest_first(), query))
        except ValueError as exc:
            return twilio_error(400, 20001, f"Invalid query parameter: {exc}")
        start = page * page_size
        chunk = matches[start : start + page_size]
        base = f"{API_PREFIX}/{self._account_sid}/Messages.json"
        kept = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(number: int) -> str:
            return f"{base}?{urlencode({**kept, 'PageSize': page_size, 'Page': number})}"

        has_next = start + page_size < len(matches)
        return json_response(
            {
                "messages": [message_resource(m) for m in chunk],
                "page": page,
                "page_size": page_size,
                "start": start,
                "end": start + max(len(chunk) - 1, 0),
                "uri": page_uri(page),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if has_next else None,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            }
        )


def _validate(fields: Mapping[str, str]) -> web.Response | None:
    """Twilio's checks on a new message, in Twilio's order; ``None`` when valid."""
    to = fields.get("To", "")
    if not to:
        return twilio_error(400, 21604, "A 'To' phone number is required.")
    try:
        normalize_e164(to, "To")
    except InvalidPhoneNumber:
        return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not fields.get("From"):
        return twilio_error(400, 21603, "A 'From' phone number is required.")
    body = fields.get("Body", "")
    if not body:
        return twilio_error(400, 21602, "Message body is required.")
    if len(body) > MAX_BODY_CHARS:
        return twilio_error(
            400, 21617, "The concatenated message body exceeds the 1600 character limit."
        )
    callback = fields.get("StatusCallback")
    if callback and urlsplit(callback).scheme not in ("http", "https"):
        return twilio_error(400, 21609, f"The StatusCallback URL {callback} is not a valid URL.")
    return None


def _filter(messages: Iterable[StoredMessage], query: Mapping[str, str]) -> Iterable[StoredMessage]:
    to, from_ = query.get("To"), query.get("From")
    on, before, after = (_day(query.get(key)) for key in ("DateSent", "DateSent<", "DateSent>"))
    for message in messages:
        if to is not None and message.to != to:
            continue
        if from_ is not None and message.from_ != from_:
            continue
        sent = (message.date_sent or message.date_created).date()
        if on is not None and sent != on:
            continue
        # Twilio reads DateSent< and DateSent> (DateSent<=, DateSent>= on the wire) inclusively.
        if before is not None and sent > before:
            continue
        if after is not None and sent < after:
            continue
        yield message


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"DateSent must be YYYY-MM-DD, got {value!r}") from None
