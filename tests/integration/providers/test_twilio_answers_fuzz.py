"""Any answer a provider gives becomes a receipt or a Pigeon error that fits the attempt record.

A real HTTP server on 127.0.0.1 replays generated answers (Twilio-like JSON
with wrong types, truncated JSON, raw bytes, bodies up to a megabyte, odd
``Retry-After`` headers) to the production adapter's own aiohttp code.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import TIMEOUT, json_values, nasty_text, scaled
from tests.support import serve_http

from pigeon.domain.delivery import DeliveryReport
from pigeon.errors import PermanentError, ProviderRateLimited, TransientError
from pigeon.providers.port import ProviderReceipt, SmsMessage
from pigeon.providers.retry_after import MAX_RETRY_AFTER_SECONDS
from pigeon.providers.twilio import TwilioSmsProvider

SID = "AC" + "1" * 32
MESSAGE = SmsMessage(to="+14155550123", body="top secret body", status_callback="https://x/cb")
#: what an error may be: it becomes the attempt's 'error' and the timeline's detail
MAX_ERROR_CHARS = 2000


@dataclass
class Answer:
    """One scripted HTTP answer."""

    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        return f"Answer({self.status}, {shown!r} ({len(self.body)} bytes), {self.headers!r})"


@dataclass
class Script:
    """The answer the fake provider gives next."""

    answer: Answer = field(default_factory=Answer)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, TwilioSmsProvider]]:
    """A scripted provider on 127.0.0.1 and the Twilio adapter pointed at it."""
    script = Script()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        answer = script.answer
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    runner, url = await serve_http(handle)
    provider = TwilioSmsProvider(
        base_url=url,
        account_sid=SID,
        auth_token="token",
        default_from="+15005550006",
        timeout_seconds=5.0,
    )
    await provider.start()
    yield script, provider
    await provider.stop()
    await runner.cleanup()


def _dumps(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


twilio_like = st.fixed_dictionaries(
    {},
    optional={
        "sid": st.one_of(st.just("SM" + "a" * 32), st.just("SM" + "a" * 100), json_values),
        "status": st.one_of(st.sampled_from(["queued", "sent", "accepted"]), json_values),
        "num_segments": st.one_of(st.just("1"), json_values),
        "code": st.one_of(st.sampled_from([20429, 21211, 21610, 30001, 20003]), json_values),
        "message": st.one_of(nasty_text, json_values, st.just("x" * 5000)),
        "more_info": st.one_of(nasty_text, json_values, st.just("https://" + "y" * 5000)),
        "messages": json_values,
        "error_code": json_values,
        "error_message": json_values,
    },
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Twilio-like JSON, the same cut short, raw bytes, or a huge body."""
    kind = draw(st.sampled_from(["json", "json", "truncated", "bytes", "huge", "any-json"]))
    if kind == "json":
        return _dumps(draw(twilio_like))
    if kind == "truncated":
        whole = _dumps(draw(twilio_like))
        return whole[: draw(st.integers(0, max(len(whole) - 1, 0)))]
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "huge":
        size = draw(st.sampled_from([70_000, 1_000_000]))
        return b'{"sid": "SM1", "message": "' + b"z" * size + b'"}'
    return _dumps(draw(json_values))


answers = st.builds(
    Answer,
    status=st.one_of(
        st.sampled_from([200, 201, 400, 401, 404, 429, 500, 503]), st.integers(200, 599)
    ),
    body=bodies(),
    headers=st.one_of(
        st.just({}),
        st.fixed_dictionaries(
            {
                "Retry-After": st.one_of(
                    st.sampled_from(["²", "9" * 400, "-1", "1e9", "Wed, 21 Oct 99999 07:28 GMT"]),
                    st.from_regex(r"\A[0-9]{1,12}\Z"),
                    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
                )
            }
        ),
    ),
)


def _check_storable(text: str) -> None:
    assert "\x00" not in text
    text.encode("utf-8")  # no lone surrogates: both stores and the envelope take it


def _check_error(exc: Exception, answer: Answer) -> None:
    assert isinstance(exc, TransientError | PermanentError), repr(exc)
    text = str(exc)
    _check_storable(text)
    assert len(text) <= MAX_ERROR_CHARS, len(text)
    assert "top secret body" not in text
    if isinstance(exc, ProviderRateLimited) and exc.retry_after is not None:
        assert math.isfinite(exc.retry_after)
        assert 0 <= exc.retry_after <= MAX_RETRY_AFTER_SECONDS


def _check_receipt(receipt: ProviderReceipt) -> None:
    assert 0 < len(receipt.message_id) <= 64
    _check_storable(receipt.message_id)
    _check_storable(receipt.status)
    assert receipt.segments is None or 0 < receipt.segments <= 1000


@pytest.mark.timeout(TIMEOUT)
@scaled(150)
@given(answer=answers)
async def test_any_answer_to_a_send_is_a_receipt_or_an_error_that_fits_the_record(
    scripted: tuple[Script, TwilioSmsProvider], answer: Answer
) -> None:
    """send() returns a storable receipt or raises a Transient/PermanentError, short and clean."""
    script, provider = scripted
    script.answer = answer

    try:
        receipt = await provider.send(MESSAGE)
    except Exception as exc:
        _check_error(exc, answer)
        if answer.status < 300:
            assert "answer b" in str(exc)  # an unreadable receipt is quoted, escaped
    else:
        assert 200 <= answer.status < 300
        _check_receipt(receipt)


@pytest.mark.timeout(TIMEOUT)
@scaled(100)
@given(answer=answers)
async def test_any_answer_to_a_status_fetch_or_look_up_is_a_result_or_a_transient_error(
    scripted: tuple[Script, TwilioSmsProvider], answer: Answer
) -> None:
    """fetch_status() and find_sent() give clean results or raise only our errors."""
    script, provider = scripted
    script.answer = answer

    try:
        report = await provider.fetch_status("SM" + "a" * 32)
    except Exception as exc:
        _check_error(exc, answer)
    else:
        assert report.provider_message_id == "SM" + "a" * 32
        _check_storable(report.error)
        assert len(report.error) <= 300
        assert DeliveryReport.from_json(report.to_json()) == report
    try:
        found = await provider.find_sent(MESSAGE, sent_after=datetime.now(UTC))
    except Exception as exc:
        _check_error(exc, answer)
    else:
        if found is not None:
            _check_receipt(found)
