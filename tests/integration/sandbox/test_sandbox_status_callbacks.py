"""Status callbacks reach the sender's webhook in order, signed like Twilio signs them."""

from __future__ import annotations

import asyncio

from sandbox_testkit import ACCOUNT_SID, AUTH_TOKEN, FROM, TO, CallbackReceiver

from pigeon.providers.port import SmsMessage
from pigeon.providers.signature import is_valid_signature
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.sandbox import FaultConfig, SandboxServer


async def test_callbacks_arrive_sent_then_delivered_with_valid_signatures(
    provider: TwilioSmsProvider, receiver: CallbackReceiver
) -> None:
    """Given a StatusCallback, the webhook gets 'sent' then 'delivered', each correctly signed."""
    receipt = await provider.send(SmsMessage(to=TO, body="hello", status_callback=receiver.url))

    first_signature, first = await receiver.next()
    second_signature, second = await receiver.next()

    assert [first["MessageStatus"], second["MessageStatus"]] == ["sent", "delivered"]
    for signature, params in ((first_signature, first), (second_signature, second)):
        assert is_valid_signature(AUTH_TOKEN, receiver.url, params, signature)
        assert params["MessageSid"] == params["SmsSid"] == receipt.message_id
        assert params["SmsStatus"] == params["MessageStatus"]
        assert (params["AccountSid"], params["From"], params["To"]) == (ACCOUNT_SID, FROM, TO)
        assert params["ApiVersion"] == "2010-04-01"
        assert "ErrorCode" not in params
        assert "Body" not in params


async def test_failed_delivery_reports_undelivered_with_an_error_code(
    sandbox: SandboxServer, provider: TwilioSmsProvider, receiver: CallbackReceiver
) -> None:
    """With delivery_failure_rate=1 the second callback is 'undelivered' with ErrorCode 30003."""
    sandbox.faults.config = FaultConfig(delivery_failure_rate=1)
    await provider.send(SmsMessage(to=TO, body="hello", status_callback=receiver.url))

    _, first = await receiver.next()
    signature, second = await receiver.next()

    assert first["MessageStatus"] == "sent"
    assert second["MessageStatus"] == "undelivered"
    assert second["ErrorCode"] == "30003"
    assert is_valid_signature(AUTH_TOKEN, receiver.url, second, signature)


async def test_unreachable_webhook_never_breaks_the_sandbox(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> None:
    """A callback URL nobody listens on is retried, counted as failed, and sends keep working."""
    async with SandboxServer(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as gone:
        dead_url = f"{gone.url}/nobody-home"
    await provider.send(SmsMessage(to=TO, body="hello", status_callback=dead_url))
    receipt = await provider.send(SmsMessage(to=TO, body="still fine"))
    assert receipt.status == "queued"

    async with asyncio.timeout(5):
        await sandbox.callbacks.drain()
    assert sandbox.stats.callbacks_failed == 2
    assert sandbox.stats.callbacks_delivered == 0
