"""find_sent over HTTP: finding the message whose answer got lost, through the list API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from providers_testkit import ACCOUNT_SID, AUTH_TOKEN, FROM, TO, entry

from pigeon.errors import ProviderOutcomeUnknown
from pigeon.providers.factory import ProviderSettings, build_sms_provider
from pigeon.providers.port import SmsMessage
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.sandbox import FaultConfig, SandboxServer

CALLBACK = "http://127.0.0.1:1/v1/callbacks/sms"


@pytest.fixture
async def adapter(primary: SandboxServer) -> AsyncIterator[TwilioSmsProvider]:
    """The Twilio adapter pointed at the primary sandbox, with a short timeout."""
    provider = TwilioSmsProvider(
        base_url=primary.url,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        default_from=FROM,
        timeout_seconds=0.5,
        name="primary",
    )
    await provider.start()
    yield provider
    await provider.stop()


def _message(notification: str, body: str = "Your code is 1234") -> SmsMessage:
    return SmsMessage(to=TO, body=body, status_callback=f"{CALLBACK}?n={notification}")


async def test_a_message_accepted_but_never_answered_is_found(
    primary: SandboxServer, adapter: TwilioSmsProvider
) -> None:
    """After drop-after-accept the adapter raised, yet find_sent returns the accepted message."""
    primary.faults.config = FaultConfig(drop_after_accept_rate=1)
    message = _message("ntf_1")
    attempt_started = datetime.now(UTC)
    with pytest.raises(ProviderOutcomeUnknown):
        await adapter.send(message)
    primary.faults.config = FaultConfig()

    receipt = await adapter.find_sent(message, sent_after=attempt_started)

    [stored] = list(primary.inbox)
    assert receipt is not None
    assert (receipt.message_id, receipt.provider, receipt.segments) == (stored.sid, "primary", 1)


async def test_a_message_that_timed_out_unrecorded_is_not_found(
    primary: SandboxServer, adapter: TwilioSmsProvider
) -> None:
    """A hung request the sandbox never recorded gives None: sending again is safe."""
    primary.faults.config = FaultConfig(timeout_rate=1)
    message = _message("ntf_1")
    attempt_started = datetime.now(UTC)
    with pytest.raises(ProviderOutcomeUnknown):
        await adapter.send(message)
    assert await adapter.find_sent(message, sent_after=attempt_started) is None


async def test_identical_texts_are_told_apart_by_their_callback_url(
    adapter: TwilioSmsProvider,
) -> None:
    """Two notifications with the same body to the same number: each finds its own message."""
    since = datetime.now(UTC)
    first = await adapter.send(_message("ntf_1"))
    second = await adapter.send(_message("ntf_2"))

    found_first = await adapter.find_sent(_message("ntf_1"), sent_after=since)
    found_second = await adapter.find_sent(_message("ntf_2"), sent_after=since)
    assert found_first is not None and found_first.message_id == first.message_id
    assert found_second is not None and found_second.message_id == second.message_id
    assert await adapter.find_sent(_message("ntf_3"), sent_after=since) is None


async def test_messages_from_before_the_attempt_do_not_count(
    adapter: TwilioSmsProvider,
) -> None:
    """A message created before sent_after is an earlier send, not this attempt."""
    await adapter.send(_message("ntf_1"))
    later = datetime.now(UTC) + timedelta(seconds=2)
    assert await adapter.find_sent(_message("ntf_1"), sent_after=later) is None


async def test_the_look_up_pages_through_a_busy_recipient(
    primary: SandboxServer, adapter: TwilioSmsProvider
) -> None:
    """The message sits behind more than one page of newer ones and is still found."""
    since = datetime.now(UTC)
    target = await adapter.send(_message("ntf_target"))
    for i in range(130):
        await adapter.send(SmsMessage(to=TO, body=f"newer {i}"))
    receipt = await adapter.find_sent(_message("ntf_target"), sent_after=since)
    assert receipt is not None and receipt.message_id == target.message_id


async def test_a_still_queued_message_is_found_despite_twilios_date_filter() -> None:
    """A message without date_sent yet escapes DateSent filters; the undated search finds it."""
    async with SandboxServer(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, callback_delay_seconds=30
    ) as slow:
        provider = TwilioSmsProvider(
            base_url=slow.url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, default_from=FROM
        )
        await provider.start()
        try:
            since = datetime.now(UTC)
            sent = await provider.send(_message("ntf_1"))
            receipt = await provider.find_sent(_message("ntf_1"), sent_after=since)
        finally:
            await provider.stop()
    assert receipt is not None
    assert (receipt.message_id, receipt.status) == (sent.message_id, "queued")


async def test_failover_finds_a_message_the_backup_accepted(
    primary: SandboxServer, backup: SandboxServer
) -> None:
    """With the primary down, a dropped answer from the backup is found through the failover."""
    primary.faults.config = FaultConfig(down=True)
    backup.faults.config = FaultConfig(drop_after_accept_rate=1)
    provider = build_sms_provider(
        ProviderSettings([entry("primary", primary), entry("backup", backup)], timeout_seconds=2)
    )
    await provider.start()
    try:
        since = datetime.now(UTC)
        with pytest.raises(ProviderOutcomeUnknown):
            await provider.send(_message("ntf_1"))
        receipt = await provider.find_sent(_message("ntf_1"), sent_after=since)
    finally:
        await provider.stop()
    [stored] = list(backup.inbox)
    assert receipt is not None
    assert (receipt.message_id, receipt.provider) == (stored.sid, "backup")
    assert len(primary.inbox) == 0
