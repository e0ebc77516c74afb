"""Twilio error codes and HTTP statuses map to the right Pigeon error, table by table.

The adapter cases run against a scripted HTTP server on loopback, so the
adapter's own aiohttp code runs unmodified.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import pytest
from aiohttp import web
from tests.support import free_port

from pigeon.errors import (
    DeliveryError,
    PermanentError,
    ProviderOutcomeUnknown,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from pigeon.providers.port import SmsMessage
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.providers.twilio_errors import TWILIO_ERROR_CODES, ErrorKind, classify, meaning_of

SID = "AC" + "2" * 32
MESSAGE = SmsMessage(to="+14155550123", body="secret body")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, 21211, ErrorKind.PERMANENT),  # invalid 'To'
        (400, 21610, ErrorKind.PERMANENT),  # unsubscribed recipient
        (400, 21408, ErrorKind.PERMANENT),  # geo permission
        (400, 21614, ErrorKind.PERMANENT),  # not a mobile number
        (400, 21617, ErrorKind.PERMANENT),  # body too long
        (429, 20429, ErrorKind.RATE_LIMITED),
        (400, 20429, ErrorKind.RATE_LIMITED),  # the code wins over the status
        (429, None, ErrorKind.RATE_LIMITED),
        (429, 30001, ErrorKind.RATE_LIMITED),  # queue overflow
        (400, 21611, ErrorKind.RATE_LIMITED),  # too many queued for this From
        (500, 20500, ErrorKind.TRANSIENT),
        (503, 20503, ErrorKind.TRANSIENT),
        (502, None, ErrorKind.TRANSIENT),
        (504, None, ErrorKind.TRANSIENT),
        (408, None, ErrorKind.TRANSIENT),
        (401, 20003, ErrorKind.CREDENTIALS),
        (403, None, ErrorKind.CREDENTIALS),
        (400, 21606, ErrorKind.CREDENTIALS),  # From not SMS-capable: fix the settings
        (404, 20404, ErrorKind.CREDENTIALS),  # wrong account SID in the URL
        (400, None, ErrorKind.PERMANENT),
        (422, 99999, ErrorKind.PERMANENT),  # unknown code: the status decides
        (500, 99999, ErrorKind.TRANSIENT),
        (302, None, ErrorKind.TRANSIENT),  # not an answer we can read
    ],
)
def test_codes_and_statuses_classify_as_documented(
    status: int, code: int | None, kind: ErrorKind
) -> None:
    """Each known code, and each status without a known code, has its documented kind."""
    assert classify(status, code) is kind


def test_every_table_entry_has_a_fitting_http_status_and_a_meaning() -> None:
    """The table the sandbox injects from is consistent: errors have 4xx/5xx and a text."""
    for code, entry in TWILIO_ERROR_CODES.items():
        assert entry.code == code
        assert 400 <= entry.http_status < 600
        assert entry.meaning
        assert meaning_of(code) == entry.meaning
    assert meaning_of(None) is None
    assert meaning_of(12345) is None


@dataclass
class Scripted:
    """The handler the fake Twilio runs for every request."""

    handler: Handler | None = None
    paths: list[str] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Scripted, str]]:
    """A scripted HTTP server on 127.0.0.1 and its base URL."""
    script = Scripted()

    async def handle(request: web.Request) -> web.StreamResponse:
        script.paths.append(request.path_qs)
        assert script.handler is not None
        return await script.handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield script, f"http://{host}:{port}"
    await runner.cleanup()


async def _adapter(base_url: str, timeout_seconds: float = 2.0) -> TwilioSmsProvider:
    adapter = TwilioSmsProvider(
        base_url=base_url,
        account_sid=SID,
        auth_token="tok",
        default_from="+15005550006",
        timeout_seconds=timeout_seconds,
        name="primary",
        settings_hint="the 'primary' entry of PIGEON_SMS_PROVIDERS",
    )
    await adapter.start()
    return adapter


def _answer(status: int, body: dict[str, object] | str, **headers: str) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        text = body if isinstance(body, str) else orjson.dumps(body).decode()
        return web.Response(
            status=status, text=text, content_type="application/json", headers=headers
        )

    return handle


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, 21211, ProviderRejected),
        (400, 21610, ProviderRejected),
        (400, 21408, ProviderRejected),
        (400, 21614, ProviderRejected),
        (401, 20003, ProviderRejected),
        (400, 21606, ProviderRejected),
        (429, 20429, ProviderRateLimited),
        (429, 30001, ProviderRateLimited),
        (500, 20500, ProviderUnavailable),
        (503, 20503, ProviderUnavailable),
    ],
)
async def test_the_adapter_raises_the_mapped_error_with_code_and_status(
    server: tuple[Scripted, str], status: int, code: int, error: type[DeliveryError]
) -> None:
    """Every mapped code surfaces as its Pigeon error carrying Twilio's code and HTTP status."""
    server[0].handler = _answer(status, {"code": code, "message": f"Twilio says {code}"})
    adapter = await _adapter(server[1])
    try:
        with pytest.raises(error) as caught:
            await adapter.send(MESSAGE)
    finally:
        await adapter.stop()
    assert (caught.value.code, caught.value.http_status) == (code, status)
    assert f"Twilio error {code}" in str(caught.value)
    assert f"Twilio says {code}" in str(caught.value)
    assert not isinstance(caught.value, ProviderOutcomeUnknown)


async def test_credential_errors_name_where_to_fix_them(server: tuple[Scripted, str]) -> None:
    """A 401 says which configured provider entry holds the wrong credentials."""
    server[0].handler = _answer(401, {"code": 20003, "message": "Authenticate"})
    adapter = await _adapter(server[1])
    try:
        with pytest.raises(PermanentError, match="'primary' entry of PIGEON_SMS_PROVIDERS"):
            await adapter.send(MESSAGE)
    finally:
        await adapter.stop()


async def test_a_known_code_without_a_message_is_explained(server: tuple[Scripted, str]) -> None:
    """When Twilio sends only a code, our table's meaning goes into the error for the timeline."""
    server[0].handler = _answer(400, {"code": 21614})
    adapter = await _adapter(server[1])
    try:
        with pytest.raises(ProviderRejected, match="not a mobile number"):
            await adapter.send(MESSAGE)
    finally:
        await adapter.stop()


@pytest.mark.parametrize(
    ("retry_after", "expected"), [("7", 7.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("x", None)]
)
async def test_retry_after_is_read_as_seconds_or_http_date(
    server: tuple[Scripted, str], retry_after: str, expected: float | None
) -> None:
    """Retry-After on a 429 becomes retry_after, whether seconds or an HTTP-date."""
    server[0].handler = _answer(429, {"code": 20429}, **{"Retry-After": retry_after})
    adapter = await _adapter(server[1])
    try:
        with pytest.raises(ProviderRateLimited) as caught:
            await adapter.send(MESSAGE)
    finally:
        await adapter.stop()
    assert caught.value.retry_after == expected


async def test_a_timeout_is_an_unknown_outcome(server: tuple[Scripted, str]) -> None:
    """No answer within the timeout may mean accepted: ProviderOutcomeUnknown, cause kept."""

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)  # part of the scenario: a provider that does not answer
        return web.Response(status=500)

    server[0].handler = hang
    adapter = await _adapter(server[1], timeout_seconds=0.2)
    try:
        with pytest.raises(ProviderOutcomeUnknown) as caught:
            await adapter.send(MESSAGE)
    finally:
        await adapter.stop()
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert "may have accepted" in str(caught.value)


async def test_a_dropped_connection_is_an_unknown_outcome(server: tuple[Scripted, str]) -> None:
    """A connection closed after the request went out is ProviderOutcomeUnknown."""

    async def drop(request: web.Request) -> web.Response:
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=201)

    server[0].handler = drop
    adapter = await _adapter(server[1])
    try:
        with pytest.raises(ProviderOutcomeUnknown):
            await adapter.send(MESSAGE)
    finally:
        await adapter.stop()


async def test_an_unreadable_success_is_an_unknown_outcome(server: tuple[Scripted, str]) -> None:
    """A 201 without a SID may be an accepted message: ProviderOutcomeUnknown."""
    server[0].handler = _answer(201, "<html>ok</html>")
    adapter = await _adapter(server[1])
    try:
        with pytest.raises(ProviderOutcomeUnknown):
            await adapter.send(MESSAGE)
    finally:
        await adapter.stop()


async def test_a_refused_connection_is_unavailable_but_certainly_not_sent() -> None:
    """Nothing listening: ProviderUnavailable, and not an unknown outcome."""
    adapter = await _adapter(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await adapter.send(MESSAGE)
    finally:
        await adapter.stop()
    assert not isinstance(caught.value, ProviderOutcomeUnknown)
    assert "nothing was sent" in str(caught.value)
