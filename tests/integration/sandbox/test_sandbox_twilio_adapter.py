"""The Twilio adapter, driven against a real sandbox over HTTP, maps every outcome to our errors."""

from __future__ import annotations

import aiohttp
import pytest
from sandbox_testkit import ACCOUNT_SID, AUTH_TOKEN, FROM, TO

from pigeon.errors import ProviderRateLimited, ProviderRejected, ProviderUnavailable
from pigeon.providers.port import SmsMessage
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.sandbox import FaultConfig, SandboxServer

SECRET_BODY = "Your code is 424242"


async def test_successful_send_returns_a_receipt_and_lands_in_the_inbox(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """A valid message is accepted as queued and appears in the inbox with its body."""
    receipt = await provider.send(SmsMessage(to=TO, body="Hello from Pigeon"))

    assert receipt.provider == "twilio"
    assert receipt.status == "queued"
    assert receipt.segments == 1
    assert receipt.message_id.startswith("SM")
    assert len(receipt.message_id) == 34
    async with http.get(f"{sandbox.url}/sandbox/messages") as response:
        inbox = await response.json()
    [stored] = inbox["messages"]
    assert stored["sid"] == receipt.message_id
    assert (stored["to"], stored["from"], stored["body"]) == (TO, FROM, "Hello from Pigeon")
    assert stored["num_segments"] == 1


async def test_long_unicode_body_counts_its_segments(provider: TwilioSmsProvider) -> None:
    """A 100-character UCS-2 body is billed as two segments."""
    receipt = await provider.send(SmsMessage(to=TO, body="é" * 50 + "😀" * 25))
    assert receipt.segments == 2


async def test_invalid_to_is_rejected_with_twilio_code_21211(
    provider: TwilioSmsProvider,
) -> None:
    """An invalid 'To' number is a permanent rejection carrying Twilio's code, not the body."""
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(SmsMessage(to="+1555", body=SECRET_BODY))

    assert caught.value.code == 21211
    assert caught.value.http_status == 400
    assert "not a valid phone number" in str(caught.value)
    assert SECRET_BODY not in str(caught.value)


async def test_missing_body_is_rejected_with_twilio_code_21602(
    provider: TwilioSmsProvider,
) -> None:
    """An empty body is refused permanently with Twilio's 21602."""
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(SmsMessage(to=TO, body=""))
    assert caught.value.code == 21602


async def test_body_over_1600_characters_is_rejected_with_21617(
    provider: TwilioSmsProvider,
) -> None:
    """A body longer than Twilio's 1600-character limit is refused with 21617."""
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(SmsMessage(to=TO, body="x" * 1601))
    assert caught.value.code == 21617
    assert "x" * 20 not in str(caught.value)


async def test_wrong_credentials_are_rejected_and_name_the_settings(
    sandbox: SandboxServer,
) -> None:
    """A wrong auth token gives a permanent rejection (Twilio 20003) that says what to fix."""
    adapter = TwilioSmsProvider(
        base_url=sandbox.url, account_sid=ACCOUNT_SID, auth_token="wrong", default_from=FROM
    )
    await adapter.start()
    try:
        with pytest.raises(ProviderRejected) as caught:
            await adapter.send(SmsMessage(to=TO, body=SECRET_BODY))
    finally:
        await adapter.stop()
    assert caught.value.http_status == 401
    assert caught.value.code == 20003
    assert "PIGEON_TWILIO_AUTH_TOKEN" in str(caught.value)


async def test_server_errors_are_transient(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> None:
    """With error_rate=1 every send fails with ProviderUnavailable (HTTP 500, Twilio 20500)."""
    sandbox.faults.config = FaultConfig(error_rate=1)
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.send(SmsMessage(to=TO, body=SECRET_BODY))
    assert (caught.value.http_status, caught.value.code) == (500, 20500)
    assert sandbox.stats.rejected_by_fault == 1


async def test_rate_limiting_carries_retry_after(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> None:
    """With rate_429=1 sends raise ProviderRateLimited with retry_after 1 second."""
    sandbox.faults.config = FaultConfig(rate_429=1)
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.send(SmsMessage(to=TO, body=SECRET_BODY))
    assert caught.value.retry_after == 1.0
    assert caught.value.code == 20429


async def test_a_sandbox_that_is_down_is_unavailable(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> None:
    """With down=true sends raise ProviderUnavailable with HTTP 503."""
    sandbox.faults.config = FaultConfig(down=True)
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.send(SmsMessage(to=TO, body=SECRET_BODY))
    assert caught.value.http_status == 503


async def test_latency_beyond_the_timeout_is_unavailable(sandbox: SandboxServer) -> None:
    """A sandbox slower than the adapter's timeout gives ProviderUnavailable, cause kept."""
    sandbox.faults.config = FaultConfig(latency_ms=500)
    adapter = TwilioSmsProvider(
        base_url=sandbox.url,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        default_from=FROM,
        timeout_seconds=0.1,
    )
    await adapter.start()
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await adapter.send(SmsMessage(to=TO, body=SECRET_BODY))
    finally:
        await adapter.stop()
    assert isinstance(caught.value.__cause__, TimeoutError)


async def test_nothing_listening_is_unavailable() -> None:
    """A refused connection is a transient ProviderUnavailable."""
    async with SandboxServer(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as gone:
        url = gone.url
    adapter = TwilioSmsProvider(
        base_url=url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, default_from=FROM
    )
    await adapter.start()
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await adapter.send(SmsMessage(to=TO, body=SECRET_BODY))
    finally:
        await adapter.stop()
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)


async def test_sending_before_start_says_how_to_fix_it(sandbox: SandboxServer) -> None:
    """An adapter that was never started raises a clear ProviderUnavailable."""
    adapter = TwilioSmsProvider(
        base_url=sandbox.url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, default_from=FROM
    )
    with pytest.raises(ProviderUnavailable, match=r"start\(\)"):
        await adapter.send(SmsMessage(to=TO, body=SECRET_BODY))


async def test_faults_changed_at_run_time_take_effect(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """PUT /sandbox/faults switches faults on and off for the very next send."""
    async with http.put(f"{sandbox.url}/sandbox/faults", json={"down": True}) as response:
        assert response.status == 200
        assert (await response.json())["down"] is True
    with pytest.raises(ProviderUnavailable):
        await provider.send(SmsMessage(to=TO, body=SECRET_BODY))

    async with http.put(f"{sandbox.url}/sandbox/faults", json={"down": False}) as response:
        assert response.status == 200
    receipt = await provider.send(SmsMessage(to=TO, body=SECRET_BODY))
    assert receipt.status == "queued"
