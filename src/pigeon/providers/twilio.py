"""Twilio Programmable Messaging adapter (also speaks to Pigeon's sandbox).

Twilio's answers are mapped onto Pigeon's exception tree here, once; which
Twilio code means what lives in :mod:`pigeon.providers.twilio_errors`::

    2xx with a message resource           -> ProviderReceipt
    2xx we cannot read                    -> ProviderOutcomeUnknown (it may have been accepted)
    rate limited (429, 20429, 30001, …)   -> ProviderRateLimited (retry_after from Retry-After)
    transient (5xx, 20500, 20503, …)      -> ProviderUnavailable
    credentials / account (401, 20003, …) -> ProviderRejected, naming the settings to check
    permanent (21211, 21610, 21614, …)    -> ProviderRejected with Twilio's code and message
    connection refused                    -> ProviderUnavailable (nothing was sent)
    timeout, connection lost mid-request  -> ProviderOutcomeUnknown (something may have been)

Error messages carry the HTTP status, Twilio's code, its message and its docs
link (they end up on the notification's timeline), never the message body,
and phone numbers in them are masked. An answer we cannot read is quoted in
the error (escaped, at most ``RAW_EXCERPT_BYTES``), and every text taken from
an answer is cut to ``MAX_QUOTED_CHARS`` without control characters, so the
error always fits the attempt record on either store.
"""

from __future__ import annotations

import base64
import time
from datetime import datetime
from typing import Any, TypeGuard
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from pigeon import metrics
from pigeon.domain.delivery import DeliveryReport
from pigeon.domain.phone import mask_phone
from pigeon.errors import (
    ProviderOutcomeUnknown,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from pigeon.providers import twilio_lookup as lookup
from pigeon.providers.port import ProviderReceipt, SmsMessage
from pigeon.providers.retry_after import parse_retry_after
from pigeon.providers.twilio_errors import ErrorKind, classify, meaning_of
from pigeon.providers.twilio_reports import MAX_MESSAGE_ID_CHARS, report_from_resource

#: how much of an unreadable answer an error quotes
RAW_EXCERPT_BYTES = 200
#: the longest text from an answer (Twilio's message, its docs link) an error quotes
MAX_QUOTED_CHARS = 300

_DEFAULT_SETTINGS_HINT = "PIGEON_TWILIO_ACCOUNT_SID, PIGEON_TWILIO_AUTH_TOKEN and PIGEON_SMS_FROM"
#: the content type of a form encoded by hand (see send)
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# Failures that prove no request left this machine; aiohttp < 3.10 lacks ConnectionTimeoutError.
_NOT_CONNECTED: tuple[type[Exception], ...] = (aiohttp.ClientConnectorError,) + (
    (aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ()
)


class _NotStarted:
    """Connection state before ``start()`` and after ``stop()``."""

    @property
    def session(self) -> aiohttp.ClientSession:
        raise ProviderUnavailable(
            "the Twilio provider is not started: await provider.start() before send()"
        )


class _Started:
    """Connection state while the HTTP session is open."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session


class TwilioSmsProvider:
    """Sends SMS with Twilio's ``Messages`` REST resource over one pooled HTTP session.

    ``settings_hint`` names where the account SID, auth token and sender are
    configured, so a credentials error tells the operator what to fix.
    """

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        default_from: str,
        timeout_seconds: float = 10.0,
        name: str = "twilio",
        max_connections: int = 100,
        settings_hint: str = _DEFAULT_SETTINGS_HINT,
    ) -> None:
        self.name = name
        self._base_url = base_url.rstrip("/")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._default_from = default_from
        self._timeout_seconds = timeout_seconds
        self._max_connections = max_connections
        self._settings_hint = settings_hint
        self._messages_url = f"{self._base_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._state: _NotStarted | _Started = _NotStarted()
        bound = metrics.provider(name)
        self._latency = bound.latency if bound is not None else None  # None: metrics off

    async def start(self) -> None:
        """Open the HTTP session (idempotent)."""
        if isinstance(self._state, _Started):
            return
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout_seconds),
            connector=aiohttp.TCPConnector(limit=self._max_connections),
            headers={
                "Accept": "application/json",
                "Authorization": _basic_auth(self._account_sid, self._auth_token),
                "User-Agent": "pigeon-notify",
            },
            raise_for_status=False,
        )
        self._state = _Started(session)

    async def stop(self) -> None:
        """Close the HTTP session (idempotent)."""
        state, self._state = self._state, _NotStarted()
        if isinstance(state, _Started):
            await state.session.close()

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        """POST ``message`` to Twilio and return its receipt, or raise a Pigeon error."""
        session = self._state.session
        form = {
            "To": message.to,
            "From": message.from_number or self._default_from,
            "Body": message.body,
        }
        if message.status_callback:
            form["StatusCallback"] = message.status_callback
        started = time.perf_counter()
        try:
            # encoded here: given a dict, aiohttp builds a multipart writer (and a uuid4
            # boundary it never uses) for every request before it urlencodes the form
            body = urlencode(form).encode()
            async with session.post(self._messages_url, data=body, headers=_FORM) as response:
                status = response.status
                raw = await response.read()
                retry_after = response.headers.get("Retry-After")
        except _NOT_CONNECTED as exc:
            # Checked before TimeoutError: no connection means nothing was sent.
            raise ProviderUnavailable(
                f"{self.name}: could not reach {self._base_url} ({type(exc).__name__}: {exc}); "
                "nothing was sent"
            ) from exc
        except TimeoutError as exc:
            raise ProviderOutcomeUnknown(
                f"{self.name}: no answer from {self._base_url} within "
                f"{self._timeout_seconds:g}s; the provider may have accepted the message"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ProviderOutcomeUnknown(
                f"{self.name}: the connection to {self._base_url} failed before an answer "
                f"({type(exc).__name__}: {exc}); the provider may have accepted the message"
            ) from exc
        finally:
            if self._latency is not None:
                self._latency.observe(time.perf_counter() - started)
        payload = _decode(raw)
        if 200 <= status < 300:
            return self._receipt(payload, status, raw)
        raise self._error(message, status, payload, retry_after, what="the message", raw=raw)

    async def find_sent(
        self, message: SmsMessage, *, sent_after: datetime
    ) -> ProviderReceipt | None:
        """Look ``message`` up in Twilio's message list (see :mod:`.twilio_lookup`)."""
        cutoff = lookup.cutoff_of(sent_after)
        from_number = message.from_number or self._default_from
        for dated, max_pages in ((True, lookup.DATED_MAX_PAGES), (False, lookup.UNDATED_MAX_PAGES)):
            query: dict[str, str] | None = lookup.lookup_query(
                message, from_number, cutoff, dated=dated
            )
            url = self._messages_url
            found: list[dict[str, Any]] = []
            for _ in range(max_pages):
                payload = await self._get_page(message, url, query)
                found.extend(m for m in payload.get("messages") or () if isinstance(m, dict))
                path = lookup.next_page_path(payload)
                if path is None:
                    break
                url, query = self._base_url + path, None
            match = lookup.best_match(found, message, from_number, cutoff)
            if match is not None:
                return self._receipt(dict(match[0]), 200, b"")
        return None

    async def fetch_status(self, message_id: str) -> DeliveryReport:
        """The message's current status (``GET Messages/{Sid}.json``).

        Used when status callbacks were lost (our API was down when the provider
        called back).
        """
        url = self._messages_url.removesuffix(".json") + f"/{quote(message_id)}.json"
        session = self._state.session
        try:
            async with session.get(url) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(
                f"{self.name}: could not fetch message {message_id} ({type(exc).__name__}: {exc})"
            ) from exc
        payload = _decode(raw)
        if not 200 <= status < 300 or payload is None:
            raise ProviderUnavailable(
                f"{self.name} answered HTTP {status} to fetching message {message_id}; "
                f"answer {_excerpt(raw)}",
                http_status=status,
            )
        error_message = payload.get("error_message")
        if isinstance(error_message, str):  # quoted like every text taken from an answer
            payload["error_message"] = _quoted(error_message)
        return report_from_resource(message_id, payload)

    async def _get_page(
        self, message: SmsMessage, url: str, query: dict[str, str] | None
    ) -> dict[str, Any]:
        session = self._state.session
        try:
            async with session.get(url, params=query) as response:
                status = response.status
                raw = await response.read()
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(
                f"{self.name}: could not list messages at {self._base_url} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        payload = _decode(raw)
        if 200 <= status < 300:
            if payload is None or not isinstance(payload.get("messages"), list):
                raise ProviderUnavailable(
                    f"{self.name} answered HTTP {status} to a message look-up without a "
                    f"'messages' list; answer {_excerpt(raw)}",
                    http_status=status,
                )
            return payload
        raise self._error(message, status, payload, retry_after, what="a message look-up", raw=raw)

    def _error(
        self,
        message: SmsMessage,
        status: int,
        payload: dict[str, Any] | None,
        retry_after: str | None,
        *,
        what: str,
        raw: bytes,
    ) -> Exception:
        code = _code_or_none(payload.get("code")) if payload is not None else None
        detail = self._describe(message, status, code, payload)
        if payload is None:
            detail += f", answer {_excerpt(raw)}"
        kind = classify(status, code)
        if kind is ErrorKind.RATE_LIMITED:
            return ProviderRateLimited(
                f"{self.name} is rate limiting us: {detail}",
                code=code,
                http_status=status,
                retry_after=parse_retry_after(retry_after),
            )
        if kind is ErrorKind.TRANSIENT:
            return ProviderUnavailable(
                f"{self.name} failed on its side: {detail}", code=code, http_status=status
            )
        if kind is ErrorKind.CREDENTIALS:
            return ProviderRejected(
                f"{self.name} refused {what} for account {self._account_sid}: {detail}; "
                f"check {self._settings_hint}",
                code=code,
                http_status=status,
            )
        return ProviderRejected(
            f"{self.name} rejected {what} to {mask_phone(message.to)}: {detail}",
            code=code,
            http_status=status,
        )

    def _receipt(self, payload: dict[str, Any] | None, status: int, raw: bytes) -> ProviderReceipt:
        sid = payload.get("sid") if payload is not None else None
        if payload is None or not _is_message_id(sid):
            # The message may have been accepted: the sender must look before re-sending.
            raise ProviderOutcomeUnknown(
                f"{self.name} answered HTTP {status} without a readable message resource "
                f"(no 'sid' of 1 to {MAX_MESSAGE_ID_CHARS} visible ASCII characters in a JSON "
                f"object); the provider may have accepted the message; answer {_excerpt(raw)}",
                http_status=status,
            )
        state = payload.get("status")
        segments = _int_or_none(payload.get("num_segments"))
        return ProviderReceipt(
            message_id=sid,
            status=state if isinstance(state, str) and _is_word(state) else "queued",
            segments=segments if segments is not None and 0 < segments <= 1000 else None,
            provider=self.name,
        )

    def _describe(
        self, message: SmsMessage, status: int, code: int | None, payload: dict[str, Any] | None
    ) -> str:
        text = payload.get("message") if payload is not None else None
        parts = [f"HTTP {status}"]
        if code is not None:
            parts.append(f"Twilio error {code}")
        if isinstance(text, str) and text:
            # Twilio quotes the numbers it rejects; keep them masked like everywhere else.
            for number in (message.to, message.from_number or self._default_from):
                if number:
                    text = text.replace(number, mask_phone(number))
            parts.append(repr(_quoted(text)))
        elif (meaning := meaning_of(code)) is not None:
            parts.append(meaning)
        more_info = payload.get("more_info") if payload is not None else None
        if isinstance(more_info, str) and more_info:
            parts.append(f"see {_quoted(more_info)}")
        return ", ".join(parts)


def _basic_auth(user: str, password: str) -> str:
    # Built by hand: aiohttp.BasicAuth is deprecated in 3.14 and its replacement is not in 3.9.
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


#: fields of a provider's answer that hold the message text, and what shows instead
_BODY_FIELDS = frozenset({"body", "Body"})
_WITHHELD = "<body withheld>"


def _decode(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _excerpt(raw: bytes) -> str:
    """The start of an answer, escaped (``repr``: no NUL, ASCII only), with its size.

    A message resource echoes the SMS text in ``body``: it is withheld, since the
    excerpt ends up in logs and in the notification's timeline.
    """
    answer = _decode(raw)
    if answer is not None and any(k in answer for k in _BODY_FIELDS):
        raw = orjson.dumps({k: _WITHHELD if k in _BODY_FIELDS else v for k, v in answer.items()})
    if len(raw) <= RAW_EXCERPT_BYTES:
        return repr(raw)
    return f"{raw[:RAW_EXCERPT_BYTES]!r}… ({len(raw)} bytes)"


def _quoted(text: str) -> str:
    """Text from an answer, without control characters, at most MAX_QUOTED_CHARS long."""
    clean = "".join(ch if ch.isprintable() else " " for ch in text[: MAX_QUOTED_CHARS + 1])
    return clean if len(clean) <= MAX_QUOTED_CHARS else clean[: MAX_QUOTED_CHARS - 1] + "…"


def _is_message_id(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_MESSAGE_ID_CHARS
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _is_word(value: str) -> bool:
    return 0 < len(value) <= 32 and value.isascii() and value.isidentifier()


def _code_or_none(value: object) -> int | None:
    """A Twilio error code (they have 5 digits): a small non-negative integer, else None."""
    code = _int_or_none(value)
    return code if code is not None and 0 <= code < 1_000_000 else None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None
