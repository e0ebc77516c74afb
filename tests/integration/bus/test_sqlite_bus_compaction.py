"""Compaction of the embedded log: old rows every group has read go, nothing else does."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pigeon.bus.port import ACK, RetryLater
from pigeon.bus.sqlite import SqliteEventBus
from pigeon.bus.sqlite_consumer import SqliteConsumer

TOPIC = "orders"
DEAD = "orders.dead"
LATER = datetime.now(UTC) + timedelta(days=1)  # a cutoff every row is older than


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[SqliteEventBus]:
    """A started two-partition bus whose topic is read by groups 'a' and 'b'."""
    bus = SqliteEventBus(
        tmp_path / "bus.db", default_partitions=2, lease_seconds=1.0, readers={TOPIC: ("a", "b")}
    )
    await bus.start()
    yield bus
    await bus.stop()


async def publish(bus: SqliteEventBus, count: int, prefix: str = "m") -> None:
    """``count`` messages spread over both partitions."""
    for i in range(count):
        await bus.publish(TOPIC, f"key-{i}", f"{prefix}{i}".encode())


async def read_all(bus: SqliteEventBus, group: str) -> list[bytes]:
    """Join ``group``, read and acknowledge everything there is, leave; returns the values."""
    consumer = bus.consumer(TOPIC, group, dead_letter_topic=DEAD)
    await consumer.start()
    try:
        return await _drain(consumer)
    finally:
        await consumer.stop()


async def _drain(consumer: SqliteConsumer) -> list[bytes]:
    values = []
    while batches := await consumer.fetch(1000, 0.2):
        for batch in batches:
            await consumer.settle(batch, [ACK] * len(batch.messages))
            values += [m.value for m in batch.messages]
    return values


def log_values(bus: SqliteEventBus, topic: str = TOPIC) -> list[bytes]:
    """What the log still holds for ``topic``, in order."""
    with contextlib.closing(sqlite3.connect(bus.path)) as conn:
        rows = conn.execute("SELECT value FROM bus_log WHERE topic = ? ORDER BY id", (topic,))
        return [bytes(r[0]) for r in rows]


def written_at(bus: SqliteEventBus, value: bytes) -> datetime:
    """When the row holding ``value`` was written."""
    with contextlib.closing(sqlite3.connect(bus.path)) as conn:
        (created_at,) = conn.execute(
            "SELECT created_at FROM bus_log WHERE value = ?", (value,)
        ).fetchone()
    return datetime.fromtimestamp(created_at, UTC)


async def compact_all(bus: SqliteEventBus, before: datetime = LATER, limit: int = 1000) -> int:
    """Chunks until nothing more is due; returns how many rows went."""
    total = 0
    while (deleted := await bus.compact_log(before=before, limit=limit)) > 0:
        total += deleted
    return total


async def test_rows_every_group_has_read_go_and_the_others_stay(bus: SqliteEventBus) -> None:
    """Rows 'a' and 'b' both passed are deleted; rows only 'a' has read survive."""
    await publish(bus, 6, "old")
    assert len(await read_all(bus, "a")) == 6
    assert len(await read_all(bus, "b")) == 6
    await publish(bus, 4, "new")
    assert len(await read_all(bus, "a")) == 4  # 'b' has not read these yet

    assert await compact_all(bus) == 6

    assert sorted(log_values(bus)) == sorted(f"new{i}".encode() for i in range(4))
    assert sorted(await read_all(bus, "b")) == sorted(f"new{i}".encode() for i in range(4))


async def test_a_reader_that_never_started_keeps_every_row(bus: SqliteEventBus) -> None:
    """Group 'b' is a reader of the topic but never joined: nothing is deleted."""
    await publish(bus, 5)
    await read_all(bus, "a")

    assert await compact_all(bus) == 0
    assert len(log_values(bus)) == 5


async def test_a_group_that_joined_unannounced_is_waited_for(bus: SqliteEventBus) -> None:
    """A group the application did not name still holds back the rows it has not read."""
    await publish(bus, 4)
    await read_all(bus, "a")
    await read_all(bus, "b")
    lagging = bus.consumer(TOPIC, "audit", dead_letter_topic=DEAD)
    await lagging.start()  # a member now, no position yet
    try:
        assert await compact_all(bus) == 0
        assert len(await _drain(lagging)) == 4
        assert await compact_all(bus) == 4
    finally:
        await lagging.stop()


async def test_rows_inside_the_window_stay_though_everyone_has_read_them(
    bus: SqliteEventBus,
) -> None:
    """Only rows written before the cutoff go (here: the first three of five)."""
    await publish(bus, 3, "old")
    await asyncio.sleep(0.01)  # part of the scenario: two lots written at different times
    await publish(bus, 2, "new")
    await read_all(bus, "a")
    await read_all(bus, "b")
    # between the last old row and the first new one: a row's time read back as a
    # datetime is rounded to the microsecond, so the new row's own time could land
    # a hair after the row itself
    last_old, first_new = written_at(bus, b"old2"), written_at(bus, b"new0")
    assert last_old < first_new
    cutoff = last_old + (first_new - last_old) / 2

    assert await compact_all(bus, before=cutoff) == 3
    assert sorted(log_values(bus)) == [b"new0", b"new1"]


async def test_a_topic_no_group_reads_is_kept(bus: SqliteEventBus) -> None:
    """Nobody has read 'orders.unread', so its rows stay however old."""
    await bus.publish("orders.unread", "k", b"only copy")
    assert await compact_all(bus) == 0
    assert log_values(bus, "orders.unread") == [b"only copy"]


async def test_a_row_waiting_for_a_retry_stays_and_the_retry_still_comes(
    bus: SqliteEventBus,
) -> None:
    """A message 'a' will retry keeps its log row; the retry carries its own copy anyway."""
    await publish(bus, 1, "retry-me")
    await read_all(bus, "b")
    consumer = bus.consumer(TOPIC, "a", dead_letter_topic=DEAD)
    await consumer.start()
    try:
        (batch,) = await consumer.fetch(10, 1.0)
        await consumer.settle(batch, [RetryLater(0.0, "not yet")])

        assert await compact_all(bus) == 0
        assert log_values(bus) == [b"retry-me0"]
        assert await _drain(consumer) == [b"retry-me0"]  # the retry, acknowledged
    finally:
        await consumer.stop()
    assert await compact_all(bus) == 1


async def test_ids_keep_rising_after_everything_was_compacted(bus: SqliteEventBus) -> None:
    """A message published after the log was emptied gets a higher id and reaches each group."""
    await publish(bus, 3)
    await read_all(bus, "a")
    await read_all(bus, "b")
    before = (await bus.read(TOPIC))[-1].offset
    assert await compact_all(bus) == 3
    assert log_values(bus) == []

    await bus.publish(TOPIC, "key-x", b"after")
    (message,) = await bus.read(TOPIC)
    assert message.offset > before
    assert await read_all(bus, "a") == [b"after"]
    assert await read_all(bus, "b") == [b"after"]


async def test_a_chunk_deletes_at_most_its_limit(bus: SqliteEventBus) -> None:
    """25 rows due, chunks of 10: 10, 10, 5, then nothing."""
    await publish(bus, 25)
    await read_all(bus, "a")
    await read_all(bus, "b")

    chunks = [await bus.compact_log(before=LATER, limit=10) for _ in range(4)]
    assert chunks == [10, 10, 5, 0]
    assert log_values(bus) == []


async def test_the_redelivery_horizon_is_the_oldest_row_some_group_has_not_read(
    bus: SqliteEventBus,
) -> None:
    """Until 'b' reads them, the first row it has not read dates the horizon; then none."""
    await publish(bus, 2)
    await read_all(bus, "a")
    assert await bus.redelivery_horizon() == written_at(bus, b"m0")

    await read_all(bus, "b")
    assert await bus.redelivery_horizon() is None
