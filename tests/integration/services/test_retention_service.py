"""Retention on the embedded stack: the status-projector worker compacts the log it shares."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from tests.support import eventually

from pigeon.bootstrap import CONSUMERS, READERS, Pigeon, Runner, build
from pigeon.bus.port import ACK
from pigeon.bus.runner import ConsumerRunner
from pigeon.bus.sqlite import SqliteEventBus
from pigeon.config import Settings
from pigeon.domain.events import TOPIC_SMS_DEAD, TOPIC_SMS_REQUESTED, utcnow
from pigeon.domain.notification import Notification
from pigeon.services.projector import STATUS_GROUP, USAGE_GROUP
from pigeon.services.retention import Retention
from pigeon.services.sms_sender import GROUP as SENDER_GROUP


@pytest.fixture
async def pigeon(tmp_path: Path) -> AsyncIterator[Pigeon]:
    """The embedded stack, keeping log rows no longer than every group needs them."""
    settings = Settings(
        data_dir=tmp_path,
        auto_migrate=True,
        bus_retention_hours=0,
        notification_retention_days=0,
        retention_interval_seconds=0.05,
    )
    pigeon = build(settings)
    await pigeon.start()
    yield pigeon
    await pigeon.stop()


@contextlib.asynccontextmanager
async def running(runners: Sequence[Runner]) -> AsyncIterator[None]:
    """The runners' loops as tasks, stopped afterwards."""
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        yield
    finally:
        for runner in runners:
            runner.request_stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def accept(pigeon: Pigeon, count: int) -> None:
    """Accept ``count`` notifications as the API does, and move them into the log as the
    workers' intake relay does."""
    account = await pigeon.store.ensure_account("acme")
    for i in range(count):
        n = Notification.new_sms(account_id=account.id, to="+14155550123", body=f"m{i}")
        await pigeon.store.accept(n)
    while (await pigeon.store.move_intake()).notifications:
        pass


async def read_as(pigeon: Pigeon, group: str) -> int:
    """Read and acknowledge every request as ``group``; returns how many there were."""
    consumer = pigeon.bus.consumer(TOPIC_SMS_REQUESTED, group, dead_letter_topic=TOPIC_SMS_DEAD)
    await consumer.start()
    read = 0
    try:
        while batches := await consumer.fetch(100, 0.2):
            for batch in batches:
                await consumer.settle(batch, [ACK] * len(batch.messages))
                read += len(batch.messages)
    finally:
        await consumer.stop()
    return read


def requests_in_log(pigeon: Pigeon) -> int:
    """How many request rows the embedded log holds."""
    with contextlib.closing(sqlite3.connect(pigeon.settings.database_path)) as conn:
        query = "SELECT count(*) FROM bus_log WHERE topic = ?"
        return int(conn.execute(query, (TOPIC_SMS_REQUESTED,)).fetchone()[0])


def processed(pigeon: Pigeon, consumer: str) -> int:
    """How many events ``consumer`` has recorded as processed."""
    with contextlib.closing(sqlite3.connect(pigeon.settings.database_path)) as conn:
        query = "SELECT count(*) FROM processed_events WHERE consumer = ?"
        return int(conn.execute(query, (consumer,)).fetchone()[0])


async def test_the_log_drops_requests_once_sender_meter_and_projector_have_read_them(
    pigeon: Pigeon,
) -> None:
    """Retention 0: the worker's passes keep the requests while the sender has not read them
    (its worker never started), and delete them as soon as it has."""
    await accept(pigeon, 3)
    meter = await pigeon.workers("usage-meter")
    projector = await pigeon.workers("status-projector")
    (retention,) = [r for r in projector if isinstance(r, Retention)]

    async with running([*meter, *projector]):
        await eventually(lambda: processed(pigeon, USAGE_GROUP) == 3)
        await eventually(lambda: processed(pigeon, STATUS_GROUP) == 3)
        passes = retention.passes
        await eventually(lambda: retention.passes >= passes + 2)
        assert requests_in_log(pigeon) == 3  # the sender has not read them

        assert await read_as(pigeon, SENDER_GROUP) == 3
        await eventually(lambda: requests_in_log(pigeon) == 0)


async def test_a_lagging_group_keeps_the_exactly_once_records_others_may_need(
    pigeon: Pigeon,
) -> None:
    """Three days on, the meter's records of events some group has not read yet stay;
    once every group has read them, log rows and records go."""
    await accept(pigeon, 2)
    assert await read_as(pigeon, STATUS_GROUP) == 2
    meter = await pigeon.workers("usage-meter")
    async with running(meter):
        await eventually(lambda: processed(pigeon, USAGE_GROUP) == 2)
    assert isinstance(pigeon.bus, SqliteEventBus)
    later = Retention(
        pigeon.store,
        pigeon.bus,
        pigeon.retention_policy(),
        clock=lambda: utcnow() + timedelta(days=3),
    )

    counts = await later.sweep()
    assert counts["bus_log"] == counts["processed_events"] == 0  # the sender lags

    assert await read_as(pigeon, SENDER_GROUP) == 2
    counts = await later.sweep()
    assert counts["bus_log"] == 2
    assert counts["processed_events"] == 2
    assert processed(pigeon, USAGE_GROUP) == 0


async def test_every_group_a_worker_joins_is_a_declared_reader_of_its_topic(
    pigeon: Pigeon,
) -> None:
    """READERS (what the log waits for) names each subscription the workers make."""
    subscriptions = {
        (runner.consumer.topic, runner.consumer.group)
        for name in CONSUMERS
        for runner in await pigeon.workers(name)
        if isinstance(runner, ConsumerRunner)
    }
    declared = {(topic, group) for topic, groups in READERS.items() for group in groups}
    assert subscriptions == declared
