"""Twilio Programmable Messaging adapter (also speaks to Pigeon's sandbox).

Twilio's answers are mapped onto Pigeon's exception tree here, once::

    2xx                                   -> ProviderReceipt
    429, or Twilio code 20429             -> ProviderRateLimited (retry_after from Retry-After)
    5xx, timeout, connection error,
    a 2xx whose body cannot be read       -> ProviderUnavailable
    401 / 403 (wrong credentials)         -> ProviderRejected, naming the settings to check
    other 4xx (e.g. 21211 invalid 'To')   -> ProviderRejected with Twilio's code and message

Error messages never contain the message body, and phone numbers in them are masked.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import orjson

from pigeon.domain.phone import mask_phone
from pigeon.errors import ProviderRateLimited, ProviderRejected, ProviderUnavailable
from pigeon.providers.port import ProviderReceipt, SmsMessage
from pigeon.providers.retry_after import parse_retry_after

_RATE_LIMITED_CODE = 20429


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
    """Sends SMS with Twilio's ``Messages`` REST resource over one pooled HTTP session."""

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
    ) -> None:
        self.name = name
        self._base_url = base_url.rstrip("/")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._default_from = default_from
        self._timeout_seconds = timeout_seconds
        self._max_connections = max_connections
        self._messages_url = f"{self._base_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._state: _NotStarted | _Started = _NotStarted()

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
        try:
            async with session.post(self._messages_url, data=form) as response:
                status = response.status
                raw = await response.read()
                retry_after = response.headers.get("Retry-After")
        except TimeoutError as exc:
            raise ProviderUnavailable(
                f"{self.name}: no answer from {self._base_url} within "
                f"{self._timeout_seconds:g}s; the message may be retried"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(
                f"{self.name}: could not reach {self._base_url} ({type(exc).__name__}: {exc})"
            ) from exc
        return self._interpret(message, status, raw, retry_after)

    def _interpret(
        self, message: SmsMessage, status: int, raw: bytes, retry_after: str | None
    ) -> ProviderReceipt:
        payload = _decode(raw)
        if 200 <= status < 300:
            return self._receipt(payload, status)
        code = _int_or_none(payload.get("code")) if payload is not None else None
        detail = self._describe(message, status, code, payload)
        if status == 429 or code == _RATE_LIMITED_CODE:
            raise ProviderRateLimited(
                f"{self.name} is rate limiting us: {detail}",
                code=code,
                http_status=status,
                retry_after=parse_retry_after(retry_after),
            )
        if status >= 500:
            raise ProviderUnavailable(
                f"{self.name} failed on its side: {detail}", code=code, http_status=status
            )
        if status in (401, 403):
            raise ProviderRejected(
                f"{self.name} refused our credentials for account {self._account_sid}: {detail}; "
                "check PIGEON_TWILIO_ACCOUNT_SID and PIGEON_TWILIO_AUTH_TOKEN",
                code=code,
                http_status=status,
            )
        if 400 <= status < 500:
            raise ProviderRejected(
                f"{self.name} rejected the message to {mask_phone(message.to)}: {detail}",
                code=code,
                http_status=status,
            )
        raise ProviderUnavailable(
            f"{self.name} answered with unexpected HTTP {status}", code=code, http_status=status
        )

    def _receipt(self, payload: dict[str, Any] | None, status: int) -> ProviderReceipt:
        sid = payload.get("sid") if payload is not None else None
        if payload is None or not isinstance(sid, str) or not sid:
            # The message may have been accepted; the sender decides whether a retry is safe.
            raise ProviderUnavailable(
                f"{self.name} answered HTTP {status} without a readable message resource "
                "(no 'sid' in a JSON object)",
                http_status=status,
            )
        state = payload.get("status")
        return ProviderReceipt(
            message_id=sid,
            status=state if isinstance(state, str) else "queued",
            segments=_int_or_none(payload.get("num_segments")),
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
            parts.append(repr(text))
        more_info = payload.get("more_info") if payload is not None else None
        if isinstance(more_info, str) and more_info:
            parts.append(f"see {more_info}")
        return ", ".join(parts)


def _basic_auth(user: str, password: str) -> str:
    # Built by hand: aiohttp.BasicAuth is deprecated in 3.14 and its replacement is not in 3.9.
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _decode(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


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
