"""Every kind of answer Twilio can give maps to a receipt or to the right Pigeon error.

The fake is a real HTTP server on loopback that replays one scripted answer,
so the adapter's own aiohttp code runs unmodified.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from tests.support import serve_http

from pigeon.errors import ProviderRateLimited, ProviderRejected, ProviderUnavailable
from pigeon.providers.port import SmsMessage
from pigeon.providers.twilio import TwilioSmsProvider

SID = "AC" + "1" * 32
MESSAGE = SmsMessage(to="+14155550123", body="top secret body", status_callback="https://x/cb")


@dataclass
class ScriptedTwilio:
    """Answers every request with ``answer`` and records what it was sent."""

    answer: web.Response = field(default_factory=lambda: web.Response(status=500))
    requests: list[tuple[str, dict[str, str], str]] = field(default_factory=list)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[ScriptedTwilio, str]]:
    """A scripted Twilio on 127.0.0.1 and its base URL."""
    script = ScriptedTwilio()

    async def handle(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        script.requests.append((request.path, form, request.headers.get("Authorization", "")))
        return script.answer

    runner, url = await serve_http(handle)
    yield script, url
    await runner.cleanup()


@pytest.fixture
async def provider(fake: tuple[ScriptedTwilio, str]) -> AsyncIterator[TwilioSmsProvider]:
    """The adapter pointed at the scripted Twilio."""
    adapter = TwilioSmsProvider(
        base_url=fake[1] + "/", account_sid=SID, auth_token="tok", default_from="+15005550006"
    )
    await adapter.start()
    yield adapter
    await adapter.stop()


def _json(status: int, body: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


async def test_send_posts_twilio_form_with_basic_auth(
    fake: tuple[ScriptedTwilio, str], provider: TwilioSmsProvider
) -> None:
    """The request goes to Messages.json with To, From, Body, StatusCallback and basic auth."""
    script, _ = fake
    script.answer = _json(201, '{"sid": "SM1", "status": "queued", "num_segments": "3"}')

    receipt = await provider.send(MESSAGE)

    [(path, form, authorization)] = script.requests
    assert path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert form == {
        "To": MESSAGE.to,
        "From": "+15005550006",
        "Body": MESSAGE.body,
        "StatusCallback": "https://x/cb",
    }
    assert authorization.startswith("Basic ")
    assert (receipt.message_id, receipt.status, receipt.segments) == ("SM1", "queued", 3)


async def test_missing_segment_count_is_none(
    fake: tuple[ScriptedTwilio, str], provider: TwilioSmsProvider
) -> None:
    """A receipt without num_segments (e.g. via a Messaging Service) has segments None."""
    fake[0].answer = _json(201, '{"sid": "SM1", "status": "accepted", "num_segments": null}')
    receipt = await provider.send(MESSAGE)
    assert (receipt.status, receipt.segments) == ("accepted", None)


@pytest.mark.parametrize("body", ["<html>oops</html>", "[]", '{"status": "queued"}'])
async def test_success_status_with_unreadable_body_is_unavailable(
    fake: tuple[ScriptedTwilio, str], provider: TwilioSmsProvider, body: str
) -> None:
    """A 2xx whose body is not a message resource is a transient ProviderUnavailable."""
    fake[0].answer = _json(200, body)
    with pytest.raises(ProviderUnavailable):
        await provider.send(MESSAGE)


async def test_429_with_http_date_retry_after_is_rate_limited(
    fake: tuple[ScriptedTwilio, str], provider: TwilioSmsProvider
) -> None:
    """A 429 with Retry-After as an HTTP-date in the past asks to retry now."""
    fake[0].answer = _json(
        429,
        '{"code": 20429, "message": "Too Many Requests"}',
        **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.send(MESSAGE)
    assert caught.value.retry_after == 0.0


async def test_twilio_code_20429_is_rate_limited_whatever_the_status(
    fake: tuple[ScriptedTwilio, str], provider: TwilioSmsProvider
) -> None:
    """Twilio's 20429 code means rate limited even without HTTP 429 or Retry-After."""
    fake[0].answer = _json(400, '{"code": 20429, "message": "Too Many Requests"}')
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.send(MESSAGE)
    assert caught.value.retry_after is None


async def test_gateway_error_with_html_body_is_unavailable(
    fake: tuple[ScriptedTwilio, str], provider: TwilioSmsProvider
) -> None:
    """A 502 from a proxy, with no Twilio JSON, is still a transient ProviderUnavailable."""
    fake[0].answer = web.Response(status=502, text="<html>Bad Gateway</html>")
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.send(MESSAGE)
    assert (caught.value.http_status, caught.value.code) == (502, None)


async def test_forbidden_is_rejected_as_a_credentials_problem(
    fake: tuple[ScriptedTwilio, str], provider: TwilioSmsProvider
) -> None:
    """A 403 is a permanent rejection that names the credential settings."""
    fake[0].answer = _json(403, '{"code": 20003, "message": "Authenticate"}')
    with pytest.raises(ProviderRejected, match="PIGEON_TWILIO_ACCOUNT_SID"):
        await provider.send(MESSAGE)


async def test_rejection_message_masks_numbers_and_omits_the_body(
    fake: tuple[ScriptedTwilio, str], provider: TwilioSmsProvider
) -> None:
    """Twilio's message is quoted with the number masked, plus its docs link, never the body."""
    fake[0].answer = _json(
        400,
        '{"code": 21610, "message": "Attempt to send to unsubscribed recipient +14155550123",'
        ' "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}',
    )
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(MESSAGE)
    text = str(caught.value)
    assert caught.value.code == 21610
    assert "+1415***0123" in text
    assert "+14155550123" not in text
    assert "https://www.twilio.com/docs/errors/21610" in text
    assert MESSAGE.body not in text
    assert MESSAGE.body not in repr(MESSAGE)


async def test_stop_is_idempotent_and_start_again_works(
    fake: tuple[ScriptedTwilio, str], provider: TwilioSmsProvider
) -> None:
    """The adapter can be stopped twice and started again."""
    fake[0].answer = _json(201, '{"sid": "SM1", "status": "queued", "num_segments": "1"}')
    await provider.stop()
    await provider.stop()
    await provider.start()
    assert (await provider.send(MESSAGE)).message_id == "SM1"


def test_an_excerpt_of_an_answer_never_quotes_the_message_text() -> None:
    from pigeon.providers.twilio import _excerpt

    answer = b'{"body": "your secret code 123456", "status": "queued", "sid": 7}'
    shown = _excerpt(answer)
    assert "secret" not in shown and "<body withheld>" in shown and "queued" in shown
    assert _excerpt(b"not json") == "b'not json'"
