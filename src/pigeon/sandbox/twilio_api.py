"""The Twilio-compatible routes: create, fetch and list Messages."""

from __future__ import annotations

import asyncio
import base64
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from pigeon.domain.phone import normalize_e164
from pigeon.domain.segments import count_segments
from pigeon.errors import InvalidPhoneNumber
from pigeon.providers.twilio_errors import TWILIO_ERROR_CODES
from pigeon.sandbox.callbacks import CallbackDispatcher
from pigeon.sandbox.faults import Decision, Fault, FaultInjector
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
#: How long a "timeout" fault holds a request whose client never gives up.
HANG_MAX_SECONDS = 300.0


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
        closing: asyncio.Event | None = None,
    ) -> None:
        self._account_sid = account_sid
        self._closing = closing or asyncio.Event()
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
        except ValueError:  # UnicodeDecodeError among them: the form is not UTF-8
            return twilio_error(
                400,
                20001,
                "The request body is not a UTF-8 application/x-www-form-urlencoded form.",
            )
        latency = self._faults.latency()
        if latency:
            await asyncio.sleep(latency)
            self._stats.count_delay(latency)
        decision = self._faults.decide()
        fault = decision.fault
        if fault is Fault.DOWN:
            self._stats.count_fault(fault.value)
            return twilio_error(503, 20503, "Service Unavailable")
        if not self._authorized(request):
            return self._unauthorized()
        if fault is Fault.TIMEOUT:
            self._stats.count_fault(fault.value)
            await self._hang(request)
            return _dropped(request)
        if fault is not None and fault is not Fault.DROP_AFTER_ACCEPT:
            self._stats.count_fault(fault.value)
            return self._injected_error(decision)
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
            status_callback=fields.get("StatusCallback") or None,
        )
        self._inbox.add(message)
        self._stats.accepted += 1
        response = json_response(message_resource(message), status=201)
        self._callbacks.schedule(message, plan=self._faults.callback_plan())
        if fault is Fault.DROP_AFTER_ACCEPT:
            # Accepted and on its way, but the client never learns it: the duplicate window.
            self._stats.count_fault(fault.value, rejected=False)
            return _dropped(request)
        return response

    def _injected_error(self, decision: Decision) -> web.Response:
        if decision.fault is Fault.RATE_LIMITED:
            config = self._faults.config
            retry_after = str(config.retry_after_s)
            if config.retry_after_http_date:
                retry_after = format_datetime(
                    datetime.now(UTC) + timedelta(seconds=config.retry_after_s), usegmt=True
                )
            return twilio_error(
                429, 20429, "Too Many Requests", headers={"Retry-After": retry_after}
            )
        if decision.fault is Fault.SERVER_ERROR or decision.code is None:
            return twilio_error(500, 20500, "An internal server error has occurred")
        entry = TWILIO_ERROR_CODES[decision.code]
        return twilio_error(
            entry.http_status, entry.code, entry.meaning[:1].upper() + entry.meaning[1:]
        )

    async def _hang(self, request: web.Request) -> None:
        """Say nothing until the client gives up, the server stops, or HANG_MAX_SECONDS pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANG_MAX_SECONDS
        while not self._closing.is_set() and loop.time() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(0.02)

    async def fetch_message(self, request: web.Request) -> web.Response:
        """``GET Messages/{Sid}.json``."""
        if not self._authorized(request):
            return self._unauthorized()
        message = self._inbox.get(request.match_info["sid"])
        if message is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return json_response(message_resource(message))

    async def list_messages(self, request: web.Request) -> web.Response:
        """``GET Messages.json``: newest first, filtered by To, From and DateSent, paged.

        Paging follows Twilio: ``next_page_uri`` carries ``Page``, ``PageSize``
        and ``PageToken=PA<last SID of this page>``, and a page asked for by
        token starts right after that message, so messages arriving meanwhile
        shift nothing. Without a token, ``Page`` counts pages from the newest.
        """
        if not self._authorized(request):
            return self._unauthorized()
        query = request.query
        try:
            page_size = min(_whole(query, "PageSize", DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE)
            page = _whole(query, "Page", 0, 0, maximum=MAX_PAGE)
            token = query.get("PageToken")
            if token is not None and not (token.startswith("PA") and len(token) > 2):
                raise ValueError(f"PageToken must look like PA<message SID>, got {token!r}")
            matches = list(_filter(self._inbox.newest_first(), query))
        except ValueError as exc:
            return twilio_error(400, 20001, f"Invalid query parameter: {exc}")
        start = page * page_size
        if token is not None:
            after = token[2:]
            position = next((i for i, m in enumerate(matches) if m.sid == after), None)
            # A token whose message is gone (inbox cleared or evicted) falls back to Page.
            if position is not None:
                start = position + 1
        chunk = matches[start : start + page_size]
        base = f"{API_PREFIX}/{self._account_sid}/Messages.json"
        kept = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(number: int, page_token: str | None = None) -> str:
            params: dict[str, str | int] = {**kept, "PageSize": page_size, "Page": number}
            if page_token is not None:
                params["PageToken"] = page_token
            return f"{base}?{urlencode(params)}"

        has_next = start + page_size < len(matches)
        return json_response(
            {
                "messages": [message_resource(m) for m in chunk],
                "page": page,
                "page_size": page_size,
                "start": start,
                "end": start + max(len(chunk) - 1, 0),
                "uri": page_uri(page, token),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1, "PA" + chunk[-1].sid) if has_next else None,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            }
        )


#: the highest Page asked for (answers echo it, and JSON integers stop at 64 bits)
MAX_PAGE = 1_000_000


def _whole(
    query: Mapping[str, str], name: str, default: int, minimum: int, *, maximum: int | None = None
) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, got {raw!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {raw!r}")
    return value


def _dropped(request: web.Request) -> web.Response:
    """Close the connection without an answer; the response returned is never written."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)


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
    if callback and _scheme(callback) not in ("http", "https"):
        return twilio_error(400, 21609, f"The StatusCallback URL {callback} is not a valid URL.")
    return None


def _scheme(url: str) -> str | None:
    try:
        return urlsplit(url).scheme
    except ValueError:  # "http://[" and the like
        return None


def _filter(messages: Iterable[StoredMessage], query: Mapping[str, str]) -> Iterable[StoredMessage]:
    to, from_ = query.get("To"), query.get("From")
    on, before, after = (_day(query.get(key)) for key in ("DateSent", "DateSent<", "DateSent>"))
    for message in messages:
        if to is not None and message.to != to:
            continue
        if from_ is not None and message.from_ != from_:
            continue
        if message.date_sent is None:
            # Like Twilio: a message still queued has no date_sent, so no DateSent filter keeps it.
            if on is not None or before is not None or after is not None:
                continue
            yield message
            continue
        sent = message.date_sent.date()
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
