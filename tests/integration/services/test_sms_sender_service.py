"""The SMS sender against the real sandbox over HTTP, on a real SQLite store and bus."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support import eventually

from pigeon.bootstrap import Pigeon, build
from pigeon.bus.port import HEADER_DEAD_REASON, HEADER_GROUP, Message
from pigeon.config import Settings
from pigeon.domain.events import TOPIC_SMS_DEAD, TOPIC_SMS_REQUESTED, encode
from pigeon.domain.notification import Notification
from pigeon.sandbox import FaultConfig, SandboxServer

SID = "AC" + "1" * 32
TOKEN = "test-token"


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    *,
    token: str = TOKEN,
    max_attempts: int = 10,
    providers: list[dict[str, str]] | None = None,
    extra: dict[str, object] | None = None,
) -> AsyncIterator[tuple[Pigeon, SandboxServer]]:
    """A sandbox, a started Pigeon, and its sender and projector running.

    ``providers``: a failover list for PIGEON_SMS_PROVIDERS; an entry with an
    empty ``url`` points at this sandbox. ``extra``: more settings.
    """
    async with SandboxServer(account_sid=SID, auth_token=TOKEN, seed=7) as sandbox:
        if providers is not None:
            providers = [{**p, "url": p["url"] or sandbox.url} for p in providers]
        settings = Settings(
            data_dir=tmp_path,
            sms_provider_url=sandbox.url,
            twilio_account_sid=SID,
            twilio_auth_token=token,
            retry_base_seconds=0.05,
            retry_max_seconds=0.2,
            sms_max_attempts=max_attempts,
            provider_timeout_seconds=2,
            public_url="http://127.0.0.1:9",  # callbacks go nowhere: not under test here
            auto_migrate=True,
            sms_providers=json.dumps(providers) if providers is not None else "",
            **(extra or {}),  # type: ignore[arg-type]
        )
        pigeon = build(settings)
        await pigeon.start()
        runners = [*await pigeon.workers("sms-sender"), *await pigeon.workers("status-projector")]
        tasks = [asyncio.create_task(r.run()) for r in runners]
        try:
            yield pigeon, sandbox
        finally:
            for runner in runners:
                runner.request_stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            await pigeon.stop()


async def accept(pigeon: Pigeon, to: str = "+14155550123", body: str = "hello") -> str:
    """Accept a notification through the store, as the API does."""
    account = await pigeon.store.ensure_account("acme")
    notification = Notification.new_sms(account_id=account.id, to=to, body=body)
    await pigeon.store.accept(notification)
    return notification.id


async def status_of(pigeon: Pigeon, notification_id: str) -> str:
    """The notification's current status."""
    account = await pigeon.store.ensure_account("acme")
    view = await pigeon.store.get_view(account.id, notification_id)
    assert view is not None
    return view.notification.status.value


async def test_an_accepted_sms_reaches_the_provider_once_and_is_marked_sent(
    tmp_path: Path,
) -> None:
    """Given a healthy provider, one accepted SMS lands once and the journal records it."""
    async with running(tmp_path) as (pigeon, sandbox):
        nid = await accept(pigeon, body="hi there")
        await eventually(lambda: len(sandbox.inbox) == 1)
        status = ""

        async def sent() -> bool:
            nonlocal status
            status = await status_of(pigeon, nid)
            return status == "sent"

        for _ in range(200):
            if await sent():
                break
            await asyncio.sleep(0.02)
        assert status == "sent"
        (message,) = list(sandbox.inbox)
        assert message.body == "hi there"
        account = await pigeon.store.ensure_account("acme")
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        assert view.provider_message_id == message.sid
        assert [e.status for e in view.timeline] == ["accepted", "queued", "sending", "sent"]


async def test_transient_provider_errors_are_retried_until_the_provider_recovers(
    tmp_path: Path,
) -> None:
    """Given a provider answering 500, the SMS is retried and sent once it recovers."""
    async with running(tmp_path) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(error_rate=1.0)
        nid = await accept(pigeon)
        await eventually(lambda: sandbox.stats.rejected_by_fault >= 2)
        assert len(sandbox.inbox) == 0
        sandbox.faults.config = FaultConfig()
        await eventually(lambda: len(sandbox.inbox) == 1)
        await asyncio.sleep(0.3)
        account = await pigeon.store.ensure_account("acme")
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        assert view.attempts >= 3
        assert any("failed" in e.detail and "retrying" in e.detail for e in view.timeline)
        assert len(sandbox.inbox) == 1


async def test_a_permanent_provider_error_fails_the_notification_without_retrying(
    tmp_path: Path,
) -> None:
    """Given wrong credentials (Twilio 20003), the notification fails after one attempt."""
    async with running(tmp_path, token="wrong-token") as (pigeon, sandbox):
        nid = await accept(pigeon)
        for _ in range(200):
            if await status_of(pigeon, nid) == "failed":
                break
            await asyncio.sleep(0.02)
        assert await status_of(pigeon, nid) == "failed"
        await asyncio.sleep(0.3)
        account = await pigeon.store.ensure_account("acme")
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        assert view.attempts == 1
        assert view.last_error and "20003" in view.last_error
        assert len(sandbox.inbox) == 0


async def test_exhausted_retries_fail_the_notification_and_dead_letter_the_request(
    tmp_path: Path,
) -> None:
    """Given a provider that is down, after the last attempt the request is in sms.dead."""
    async with running(tmp_path, max_attempts=3) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(down=True)
        nid = await accept(pigeon)
        for _ in range(300):
            if await status_of(pigeon, nid) == "failed":
                break
            await asyncio.sleep(0.02)
        assert await status_of(pigeon, nid) == "failed"
        dead = await pigeon.bus.read(TOPIC_SMS_DEAD)
        assert len(dead) == 1
        assert dead[0].headers[HEADER_GROUP] == "sms-sender"
        assert "retries exhausted after 3 attempts" in dead[0].headers[HEADER_DEAD_REASON]


async def test_a_malformed_event_is_dead_lettered_and_the_worker_goes_on(tmp_path: Path) -> None:
    """A poison message goes to sms.dead; the next message is still sent."""
    async with running(tmp_path) as (pigeon, sandbox):
        await pigeon.bus.publish(TOPIC_SMS_REQUESTED, "+14155550123", b"{not json")
        await accept(pigeon, to="+14155550123")
        await eventually(lambda: len(sandbox.inbox) == 1)

        async def senders_dead_letters() -> list[Message]:
            # every group reading the topic dead-letters it once, marked with its name
            letters = await pigeon.bus.read(TOPIC_SMS_DEAD)
            return [m for m in letters if m.headers[HEADER_GROUP] == "sms-sender"]

        for _ in range(100):
            if await senders_dead_letters():
                break
            await asyncio.sleep(0.02)
        (dead,) = await senders_dead_letters()
        assert dead.value == b"{not json"
        assert dead.headers[HEADER_DEAD_REASON].startswith("MalformedEvent")


@pytest.mark.parametrize("copies", [2, 3])
async def test_a_redelivered_request_that_was_already_sent_is_not_sent_again(
    tmp_path: Path, copies: int
) -> None:
    """At-least-once delivery of one request sends one SMS, in one batch or across batches."""
    async with running(tmp_path) as (pigeon, sandbox):
        nid = await accept(pigeon)
        await eventually(lambda: len(sandbox.inbox) == 1)
        account = await pigeon.store.ensure_account("acme")
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        event = view.notification.requested_event()
        runners = await pigeon.workers("sms-sender")
        sender = runners[0]._handler  # the same handler a redelivery would reach
        duplicate = Message(TOPIC_SMS_REQUESTED, 0, 999, event.to, encode(event))
        outcomes = await sender([duplicate] * copies)
        assert len(outcomes) == copies
        await asyncio.sleep(0.2)
        assert len(sandbox.inbox) == 1
