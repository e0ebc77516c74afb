"""Every fault schedule of the sandbox, seen through the real Twilio adapter over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sandbox_testkit import ACCOUNT_SID, AUTH_TOKEN, FROM, TO, CallbackReceiver
from tests.support import eventually

from pigeon.errors import (
    ProviderOutcomeUnknown,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from pigeon.providers.port import SmsMessage
from pigeon.providers.signature import is_valid_signature
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.sandbox import FaultConfig, SandboxServer

BODY = "Your code is 424242"


@pytest.fixture
async def impatient(sandbox: SandboxServer) -> AsyncIterator[TwilioSmsProvider]:
    """The adapter with a short timeout, for faults that never answer."""
    adapter = TwilioSmsProvider(
        base_url=sandbox.url,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        default_from=FROM,
        timeout_seconds=0.3,
    )
    await adapter.start()
    yield adapter
    await adapter.stop()


@pytest.mark.parametrize(
    ("code", "error", "status"),
    [
        (21211, ProviderRejected, 400),
        (21610, ProviderRejected, 400),
        (20500, ProviderUnavailable, 500),
        (20503, ProviderUnavailable, 503),
        (30001, ProviderRateLimited, 429),
    ],
)
async def test_error_codes_answer_with_twilios_code_and_status(
    sandbox: SandboxServer,
    provider: TwilioSmsProvider,
    code: int,
    error: type[Exception],
    status: int,
) -> None:
    """error_codes {code: 1} answers every send with that code and its HTTP status."""
    sandbox.faults.config = FaultConfig(error_codes={str(code): 1.0})
    with pytest.raises(error) as caught:
        await provider.send(SmsMessage(to=TO, body=BODY))
    assert getattr(caught.value, "code", None) == code
    assert getattr(caught.value, "http_status", None) == status
    assert len(sandbox.inbox) == 0
    assert sandbox.stats.faults == {"error_code": 1}


async def test_error_codes_mix_in_their_shares(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> None:
    """A mix of codes and successes: every send ends as a receipt or as one of the codes."""
    sandbox.faults.config = FaultConfig(error_codes={"20500": 0.3, "21211": 0.3})
    seen: set[int | None] = set()
    for _ in range(40):
        try:
            await provider.send(SmsMessage(to=TO, body=BODY))
            seen.add(None)
        except (ProviderUnavailable, ProviderRejected) as exc:
            seen.add(exc.code)
    assert seen == {None, 20500, 21211}


async def test_latency_with_jitter_delays_each_send(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> None:
    """latency_ms plus jitter holds each answer back the fixed part plus at most the jitter."""
    sandbox.faults.config = FaultConfig(latency_ms=150, latency_jitter_ms=50)
    for sent in range(1, 4):
        before = sandbox.stats.delay_seconds
        await provider.send(SmsMessage(to=TO, body=BODY))
        # counted once the delay was over and before the answer went out
        assert sandbox.stats.delayed == sent
        assert 0.15 <= sandbox.stats.delay_seconds - before <= 0.2


async def test_timeout_rate_hangs_until_the_client_gives_up_and_records_nothing(
    sandbox: SandboxServer, impatient: TwilioSmsProvider
) -> None:
    """A hung request times out as an unknown outcome, and the sandbox kept no message."""
    sandbox.faults.config = FaultConfig(timeout_rate=1)
    with pytest.raises(ProviderOutcomeUnknown) as caught:
        await impatient.send(SmsMessage(to=TO, body=BODY))
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert len(sandbox.inbox) == 0
    assert sandbox.stats.faults == {"timeout": 1}


async def test_a_hung_request_does_not_hold_up_stopping_the_sandbox() -> None:
    """Stopping a sandbox with a request hanging on it returns promptly."""
    server = SandboxServer(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, faults=FaultConfig(timeout_rate=1)
    )
    await server.start()
    adapter = TwilioSmsProvider(
        base_url=server.url,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        default_from=FROM,
        timeout_seconds=60,
    )
    await adapter.start()
    hanging = asyncio.create_task(adapter.send(SmsMessage(to=TO, body=BODY)))
    try:
        await eventually(lambda: server.stats.faults.get("timeout") == 1)
        async with asyncio.timeout(10):
            await server.stop()
        with pytest.raises(ProviderOutcomeUnknown):
            async with asyncio.timeout(10):
                await hanging
    finally:
        hanging.cancel()
        await adapter.stop()
        await server.stop()


async def test_rate_429_carries_the_configured_retry_after(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> None:
    """rate_429 with retry_after_s=7 gives ProviderRateLimited with retry_after 7 seconds."""
    sandbox.faults.config = FaultConfig(rate_429=1, retry_after_s=7)
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.send(SmsMessage(to=TO, body=BODY))
    assert (caught.value.retry_after, caught.value.http_status) == (7.0, 429)


async def test_rate_429_can_say_retry_after_as_an_http_date(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> None:
    """With retry_after_http_date the header is a date, read back as seconds from now."""
    sandbox.faults.config = FaultConfig(rate_429=1, retry_after_s=30, retry_after_http_date=True)
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.send(SmsMessage(to=TO, body=BODY))
    assert caught.value.retry_after is not None
    assert 20.0 <= caught.value.retry_after <= 30.0


async def test_down_for_s_is_down_then_back_by_itself(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """PUT down_for_s answers 503 at once, reports the time left, and recovers on its own."""
    async with http.put(f"{sandbox.url}/sandbox/faults", json={"down_for_s": 0.5}) as rsp:
        state = await rsp.json()
    assert state["down_for_s"] == 0
    assert 0 < state["down_remaining_s"] <= 0.5
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.send(SmsMessage(to=TO, body=BODY))
    assert caught.value.http_status == 503

    async def recovered() -> bool:
        try:
            await provider.send(SmsMessage(to=TO, body=BODY))
        except ProviderUnavailable:
            return False
        return True

    await eventually(recovered, interval=0.05)  # the sandbox comes back by itself
    async with http.get(f"{sandbox.url}/sandbox/faults") as rsp:
        assert (await rsp.json())["down_remaining_s"] == 0


async def test_duplicate_callbacks_post_each_status_twice_signed(
    sandbox: SandboxServer, provider: TwilioSmsProvider, receiver: CallbackReceiver
) -> None:
    """duplicate_callback_rate=1 posts sent, sent, delivered, delivered, each validly signed."""
    sandbox.faults.config = FaultConfig(duplicate_callback_rate=1)
    await provider.send(SmsMessage(to=TO, body=BODY, status_callback=receiver.url))
    received = [await receiver.next() for _ in range(4)]
    assert [p["MessageStatus"] for _, p in received] == ["sent", "sent", "delivered", "delivered"]
    assert all(is_valid_signature(AUTH_TOKEN, receiver.url, p, s) for s, p in received)


async def test_out_of_order_callbacks_post_delivered_before_sent(
    sandbox: SandboxServer, provider: TwilioSmsProvider, receiver: CallbackReceiver
) -> None:
    """out_of_order_callback_rate=1 posts the final status first, then the stale 'sent'."""
    sandbox.faults.config = FaultConfig(out_of_order_callback_rate=1)
    receipt = await provider.send(SmsMessage(to=TO, body=BODY, status_callback=receiver.url))
    received = [await receiver.next() for _ in range(2)]
    assert [p["MessageStatus"] for _, p in received] == ["delivered", "sent"]
    assert all(is_valid_signature(AUTH_TOKEN, receiver.url, p, s) for s, p in received)
    stored = sandbox.inbox.get(receipt.message_id)
    assert stored is not None and stored.status == "delivered"


async def test_drop_after_accept_records_the_message_but_never_answers(
    sandbox: SandboxServer, provider: TwilioSmsProvider, receiver: CallbackReceiver
) -> None:
    """The client sees a lost connection, yet the message is in the inbox and its callbacks come."""
    sandbox.faults.config = FaultConfig(drop_after_accept_rate=1)
    with pytest.raises(ProviderOutcomeUnknown) as caught:
        await provider.send(SmsMessage(to=TO, body=BODY, status_callback=receiver.url))
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)

    [stored] = list(sandbox.inbox)
    assert (stored.to, stored.body) == (TO, BODY)
    _, first = await receiver.next()
    _, second = await receiver.next()
    assert (first["MessageSid"], first["MessageStatus"]) == (stored.sid, "sent")
    assert second["MessageStatus"] == "delivered"
    assert sandbox.stats.accepted == 1
    assert sandbox.stats.rejected_by_fault == 0
    assert sandbox.stats.faults == {"drop_after_accept": 1}


async def test_fault_schedules_are_validated_by_the_control_api(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """A bad schedule is refused with problem+json naming the field; a good one is echoed."""
    bad = {"error_codes": {"20500": 0.7, "21211": 0.7}}
    async with http.put(f"{sandbox.url}/sandbox/faults", json=bad) as rsp:
        problem = await rsp.json(content_type=None)
    assert rsp.status == 400
    assert problem["field"] == "error_codes"
    assert "add up to" in problem["detail"]

    good = {"error_codes": {"30001": 0.05}, "timeout_rate": 0.01, "latency_jitter_ms": 5}
    async with http.put(f"{sandbox.url}/sandbox/faults", json=good) as rsp:
        state = await rsp.json()
    assert rsp.status == 200
    assert state["error_codes"] == {"30001": 0.05}
    assert (state["timeout_rate"], state["latency_jitter_ms"]) == (0.01, 5)
