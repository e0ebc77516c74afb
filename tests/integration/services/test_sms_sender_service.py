"""The SMS sender against the real sandbox over HTTP, on each stack (see ``conftest``).

Also the service suites' shared kit: ``running`` starts a Pigeon with its sender and
status projector (and, on Kafka, the outbox relay); the marker helpers wait for a
later message instead of sleeping when a test shows that something does *not* happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from services_testkit import Stack
from tests.support import eventually

from pigeon.bootstrap import RELAY, Pigeon, build
from pigeon.bus.partitioning import partition_for
from pigeon.bus.port import Message
from pigeon.bus.runner import ConsumerRunner
from pigeon.config import Settings
from pigeon.domain.events import TOPIC_SMS_REQUESTED, TOPIC_STATUS, encode
from pigeon.domain.notification import Notification
from pigeon.errors import ConflictError
from pigeon.sandbox import FaultConfig, SandboxServer
from pigeon.services.projector import STATUS_GROUP
from pigeon.store.dead_letters import DeadLetterView

SID = "AC" + "1" * 32
TOKEN = "test-token"


@contextlib.asynccontextmanager
async def running(
    stack: Stack,
    *,
    token: str = TOKEN,
    max_attempts: int = 10,
    providers: list[dict[str, str]] | None = None,
    extra: dict[str, object] | None = None,
    before_workers: Callable[[Pigeon], Awaitable[None]] | None = None,
) -> AsyncIterator[tuple[Pigeon, SandboxServer]]:
    """A sandbox, a started Pigeon on ``stack``, and its sender and projector running
    (on Kafka the outbox relay too).

    ``providers``: a failover list for PIGEON_SMS_PROVIDERS; an entry with an
    empty ``url`` points at this sandbox. ``extra``: more settings.
    ``before_workers``: what to do with the started Pigeon before any worker runs.
    """
    async with SandboxServer(account_sid=SID, auth_token=TOKEN, seed=7) as sandbox:
        if providers is not None:
            providers = [{**p, "url": p["url"] or sandbox.url} for p in providers]
        given: dict[str, object] = {
            "data_dir": stack.data_dir,
            "sms_provider_url": sandbox.url,
            "twilio_account_sid": SID,
            "twilio_auth_token": token,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "sms_max_attempts": max_attempts,
            "provider_timeout_seconds": 2,
            "public_url": "http://127.0.0.1:9",  # callbacks go nowhere: not under test here
            "auto_migrate": True,
            "sms_providers": json.dumps(providers) if providers is not None else "",
        }
        settings = Settings(**{**given, **stack.settings, **(extra or {})})  # type: ignore[arg-type]
        pigeon = build(settings)
        await pigeon.start()
        if before_workers is not None:
            await before_workers(pigeon)
        runners = [*await pigeon.workers("sms-sender"), *await pigeon.workers("status-projector")]
        if stack.kafka:
            runners += await pigeon.workers(RELAY)
        tasks = [asyncio.create_task(r.run()) for r in runners]
        try:
            # every consumer holds its partitions before the test publishes (joining a
            # Kafka group takes seconds; a message published meanwhile would wait)
            await asyncio.wait_for(
                asyncio.gather(
                    *(r.started.wait() for r in runners if isinstance(r, ConsumerRunner))
                ),
                60,
            )
            yield pigeon, sandbox
        finally:
            for runner in runners:
                runner.request_stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
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


async def wait_status(pigeon: Pigeon, notification_id: str, *statuses: str) -> str:
    """Wait until the notification's status is one of ``statuses``; returns it."""
    seen = ""

    async def reached() -> bool:
        nonlocal seen
        seen = await status_of(pigeon, notification_id)
        return seen in statuses

    try:
        await eventually(reached)
    except AssertionError:
        raise AssertionError(f"{notification_id} never became {statuses}; it is {seen}") from None
    return seen


#: the body of a marker message (see ``handled_before``)
MARKER = "marker"


async def handled_before(pigeon: Pigeon, to: str = "+14155550123") -> None:
    """Return once everything published for ``to`` before now has been handled.

    A marker message to the same recipient travels on the same partition, after
    them, and the sender handles a partition in order: once the marker's outcome
    is recorded, nothing published earlier for ``to`` is still on its way (what a
    test that shows something does *not* happen waits for, instead of a sleep).
    """
    marker = await accept(pigeon, to=to, body=MARKER)
    await wait_status(pigeon, marker, "sent", "delivered", "failed")


async def projected_before(pigeon: Pigeon, notification_id: str) -> None:
    """Return once the status projector has handled every status event of
    ``notification_id`` published before now.

    Status events are keyed by notification: a marker notification whose id puts its
    events on the same partition is sent; its events come after the earlier ones
    (the outbox relay publishes in order), and the projector handles a partition in
    order, so once the marker shows ``sent`` the earlier events are projected.
    """
    partitions = await pigeon.bus.partitions(TOPIC_STATUS)
    target = partition_for(notification_id, partitions)
    account = await pigeon.store.ensure_account("acme")
    while True:
        marker = Notification.new_sms(account_id=account.id, to="+14155550199", body=MARKER)
        if partition_for(marker.id, partitions) == target:
            break
    await pigeon.store.accept(marker)
    await wait_status(pigeon, marker.id, "sent", "delivered", "failed")


async def dead_letters(pigeon: Pigeon, group: str) -> list[DeadLetterView]:
    """The dead letters ``group`` made, as recorded for operators (either stack)."""
    letters = await pigeon.store.dead_letters(include_replayed=True)
    return [letter for letter in letters if letter.consumer_group == group]


def sent_bodies(sandbox: SandboxServer) -> list[str]:
    """What the provider received, markers left out."""
    return [m.body for m in sandbox.inbox if m.body != MARKER]


async def test_an_accepted_sms_reaches_the_provider_once_and_is_marked_sent(
    stack: Stack,
) -> None:
    """Given a healthy provider, one accepted SMS lands once and the journal records it."""
    async with running(stack) as (pigeon, sandbox):
        nid = await accept(pigeon, body="hi there")
        await eventually(lambda: len(sandbox.inbox) == 1)
        await wait_status(pigeon, nid, "sent")
        (message,) = list(sandbox.inbox)
        assert message.body == "hi there"
        account = await pigeon.store.ensure_account("acme")
        steps = ["accepted", "queued", "sending", "sent"]

        async def every_step() -> bool:
            # "queued" comes from the requests topic, the others from the status topic:
            # the projector may take the two in either order
            view = await pigeon.store.get_view(account.id, nid)
            return view is not None and len(view.timeline) >= len(steps)

        await eventually(every_step)
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        assert view.provider_message_id == message.sid
        assert [e.status for e in view.timeline] == steps


async def test_transient_provider_errors_are_retried_until_the_provider_recovers(
    stack: Stack,
) -> None:
    """Given a provider answering 500, the SMS is retried and sent once it recovers."""
    async with running(stack) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(error_rate=1.0)
        nid = await accept(pigeon)
        await eventually(lambda: sandbox.stats.rejected_by_fault >= 2)
        assert len(sandbox.inbox) == 0
        sandbox.faults.config = FaultConfig()
        await eventually(lambda: len(sandbox.inbox) == 1)
        await wait_status(pigeon, nid, "sent")
        await handled_before(pigeon)
        account = await pigeon.store.ensure_account("acme")
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        assert view.attempts >= 3
        assert any("failed" in e.detail and "retrying" in e.detail for e in view.timeline)
        assert sent_bodies(sandbox) == ["hello"]


async def test_a_permanent_provider_error_fails_the_notification_without_retrying(
    stack: Stack,
) -> None:
    """Given wrong credentials (Twilio 20003), the notification fails after one attempt."""
    async with running(stack, token="wrong-token") as (pigeon, sandbox):
        nid = await accept(pigeon)
        await wait_status(pigeon, nid, "failed")
        await handled_before(pigeon)  # no retry of it is still coming
        account = await pigeon.store.ensure_account("acme")
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        assert view.attempts == 1
        assert view.last_error and "20003" in view.last_error
        assert len(sandbox.inbox) == 0


async def test_exhausted_retries_fail_the_notification_and_dead_letter_the_request(
    stack: Stack,
) -> None:
    """Given a provider that is down, after the last attempt the request is in sms.dead."""
    async with running(stack, max_attempts=3) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(down=True)
        nid = await accept(pigeon)
        await wait_status(pigeon, nid, "failed")
        await eventually(lambda: dead_letters(pigeon, "sms-sender"))
        (dead,) = await dead_letters(pigeon, "sms-sender")
        assert dead.notification_id == nid
        assert "retries exhausted after 3 attempts" in dead.reason
        await _attempted_exactly(pigeon, nid, 3)


async def _attempted_exactly(pigeon: Pigeon, nid: str, attempts: int) -> None:
    """The notification shows ``attempts`` attempts, each once in its timeline."""
    account = await pigeon.store.ensure_account("acme")
    view = await pigeon.store.get_view(account.id, nid)
    assert view is not None
    assert view.attempts == attempts
    details = [e.detail for e in view.timeline]
    started = sorted(d for d in details if re.fullmatch(r"attempt \d+ via twilio", d))
    assert started == [f"attempt {n} via twilio" for n in range(1, attempts + 1)], details


async def test_waits_on_an_open_circuit_are_not_attempts(stack: Stack) -> None:
    """With the breaker opening after every failure, the sends it refuses are waits: the
    notification still fails after exactly the limit of attempts, never above it, and
    its timeline shows each wait."""
    # the breaker stays open longer than the retry backoff (0.05-0.2 s): retries meet it
    settings = {"breaker_failure_threshold": 1, "breaker_reset_seconds": 0.5}
    async with running(stack, max_attempts=3, extra=settings) as (pigeon, sandbox):
        sandbox.faults.config = FaultConfig(down=True)
        nid = await accept(pigeon)
        await wait_status(pigeon, nid, "failed")
        await _attempted_exactly(pigeon, nid, 3)
        # each wait is a step of its own, saying why and until when
        account = await pigeon.store.ensure_account("acme")
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        waits = [e for e in view.timeline if e.detail.startswith("waiting: ")]
        assert waits, [e.detail for e in view.timeline]
        for step in waits:
            assert re.fullmatch(
                r"waiting: every provider's circuit is open, next try \d\d:\d\d:\d\d UTC",
                step.detail,
            ), step.detail


async def test_a_malformed_event_is_dead_lettered_and_the_worker_goes_on(stack: Stack) -> None:
    """A poison message goes to sms.dead; the next message is still sent."""
    async with running(stack) as (pigeon, sandbox):
        await pigeon.bus.publish(TOPIC_SMS_REQUESTED, "+14155550123", b"{not json")
        await accept(pigeon, to="+14155550123")
        await eventually(lambda: len(sandbox.inbox) == 1)

        # every group reading the topic dead-letters it once, marked with its name
        await eventually(lambda: dead_letters(pigeon, "sms-sender"))
        (dead,) = await dead_letters(pigeon, "sms-sender")
        assert dead.payload == b"{not json"
        assert dead.reason.startswith("MalformedEvent")


@pytest.mark.parametrize("copies", [2, 3])
async def test_a_redelivered_request_that_was_already_sent_is_not_sent_again(
    stack: Stack, copies: int
) -> None:
    """At-least-once delivery of one request sends one SMS, in one batch or across batches."""
    async with running(stack) as (pigeon, sandbox):
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
        assert len(outcomes) == copies  # the handler has returned: it sent nothing more
        assert len(sandbox.inbox) == 1


async def test_a_canceled_sms_never_reaches_the_provider_and_stays_canceled(
    stack: Stack,
) -> None:
    """Canceled before the sender saw it: the sender skips it, the projector keeps it final."""
    canceled: list[str] = []

    async def accept_and_cancel(pigeon: Pigeon) -> None:
        nid = await accept(pigeon, body="never sent")
        account = await pigeon.store.ensure_account("acme")
        assert await pigeon.store.cancel(account.id, nid, projector=STATUS_GROUP) is True
        canceled.append(nid)

    async with running(stack, before_workers=accept_and_cancel) as (pigeon, sandbox):
        (nid,) = canceled
        await handled_before(pigeon)  # the sender has passed the canceled request
        await projected_before(pigeon, nid)  # and the projector its "queued" and "canceled"
        assert sent_bodies(sandbox) == []
        assert await status_of(pigeon, nid) == "canceled"
        account = await pigeon.store.ensure_account("acme")
        view = await pigeon.store.get_view(account.id, nid)
        assert view is not None
        assert [e.status for e in view.timeline][-1] == "canceled"
        assert view.attempts == 0
        # canceling again changes nothing; the journal shows no attempt was started
        assert await pigeon.store.cancel(account.id, nid, projector=STATUS_GROUP) is False


async def test_an_sms_handed_to_the_provider_cannot_be_canceled(stack: Stack) -> None:
    async with running(stack) as (pigeon, sandbox):
        nid = await accept(pigeon, body="already sent")
        await wait_status(pigeon, nid, "sent")
        account = await pigeon.store.ensure_account("acme")
        with pytest.raises(ConflictError, match="already handed to a provider"):
            await pigeon.store.cancel(account.id, nid, projector=STATUS_GROUP)
        assert await status_of(pigeon, nid) == "sent"
        assert sent_bodies(sandbox) == ["already sent"]
