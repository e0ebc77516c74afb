"""Reading a Kafka topic with a plain aiokafka consumer: no Pigeon code, no consumer group.

Tests use it to see what really is on the wire. Tansu's end offsets are wrong
(``shared/KAFKA-TESTING.md``, pitfall 4), so a read does not stop "at the end":
it reads until the caller's condition on the records so far holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from tests.support import eventually

__all__ = ["read_topic"]

Records = Sequence[Any]  # aiokafka ConsumerRecord (the library ships no type hints)


async def read_topic(
    bootstrap_servers: str,
    topic: str,
    until: Callable[[Records], bool],
    *,
    within: float = 30.0,
) -> list[Any]:
    """Every record of ``topic`` from the beginning, once ``until(records)`` holds.

    Records are in offset order per partition; partitions are interleaved as
    fetched. Fails the test after ``within`` seconds with what was read.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        partitions: set[int] | None = None

        async def known() -> bool:
            nonlocal partitions
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer.topics()  # refreshes the cluster metadata
            return bool(partitions)

        try:
            await eventually(known, within, 0.05)
        except AssertionError:
            raise AssertionError(f"topic {topic!r} does not exist") from None
        assert partitions
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while not until(records):
            if loop.time() > deadline:
                raise AssertionError(
                    f"{topic!r}: condition not met in {within}s; read {len(records)} records"
                )
            batches = await consumer.getmany(timeout_ms=100)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records
