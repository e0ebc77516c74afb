"""Consumer lag: how many messages each group has not read yet, per partition.

Lag is the log's end minus the group's committed position, measured when asked
(at scrape time), never per message. On the embedded bus the log is a table and
positions are row ids shared by every topic, so the lag of a partition is the
count of its rows past the group's position; a group's retry store counts as
the lag of its retry topic (``<topic>.retry.<group>``, the name Kafka uses), so
both buses show the same series. On Kafka it is the partition's end offset
minus the group's committed offset (or its first offset, for a group that has
committed nothing yet: it will read from there).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pigeon.bus.kafka import KafkaEventBus
from pigeon.bus.kafka_wire import retry_topic_for

#: how long measuring Kafka lag may take before the scrape goes on without it
KAFKA_LAG_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Messages of ``topic``'s ``partition`` that ``group`` has not read yet."""

    group: str
    topic: str
    partition: int
    lag: int


#: (topic, group) pairs: which group reads which topic
Subscriptions = Sequence[tuple[str, str]]


def sqlite_lag(path: Path, subscriptions: Subscriptions) -> list[PartitionLag]:
    """The lag of every subscription on the embedded log in ``path`` (blocking: run it in
    a thread). Its own short read transaction, on a connection of its own."""
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only=1")
        conn.execute("BEGIN")
        partitions = dict(conn.execute("SELECT name, partitions FROM bus_topics").fetchall())
        positions = {
            (grp, topic, part): int(pos)
            for grp, topic, part, pos in conn.execute(
                "SELECT grp, topic, partition, position FROM bus_offsets"
            )
        }
        retries: dict[tuple[str, str, int], int] = {
            (grp, topic, part): int(count)
            for grp, topic, part, count in conn.execute(
                "SELECT grp, topic, partition, COUNT(*) FROM bus_retries "
                "GROUP BY grp, topic, partition"
            )
        }
        lags: list[PartitionLag] = []
        for topic, group in subscriptions:
            count = int(partitions.get(topic, 0))
            for part in range(count):
                (lag,) = conn.execute(
                    "SELECT COUNT(*) FROM bus_log WHERE topic = ? AND partition = ? AND id > ?",
                    (topic, part, positions.get((group, topic, part), 0)),
                ).fetchone()
                lags.append(PartitionLag(group, topic, part, int(lag)))
            retry_topic = retry_topic_for(topic, group)
            for part in range(count):
                waiting = retries.get((group, topic, part), 0)
                lags.append(PartitionLag(group, retry_topic, part, waiting))
        conn.execute("COMMIT")
        return lags
    finally:
        conn.close()


class KafkaLag:
    """Measures lag on Kafka with the bus's admin client and a consumer of its own that
    only asks for offsets (no group: it never joins, commits or reads a message).
    Opened at the first measurement, on a started bus."""

    def __init__(self, bus: KafkaEventBus) -> None:
        self._bus = bus
        self._offsets: Any = None

    async def measure(self, subscriptions: Subscriptions) -> list[PartitionLag]:
        """The lag of every subscription (and of its retry topic, once that exists)."""
        return await asyncio.wait_for(self._measure(subscriptions), KAFKA_LAG_TIMEOUT_SECONDS)

    async def _measure(self, subscriptions: Subscriptions) -> list[PartitionLag]:
        admin, structs = self._bus.admin, self._bus.aiokafka.structs
        wanted: dict[str, list[str]] = {}  # group -> its topics and retry topics
        for topic, group in subscriptions:
            wanted.setdefault(group, []).extend((topic, retry_topic_for(topic, group)))
        names = sorted({t for topics in wanted.values() for t in topics})
        # every topic's metadata: asking for named ones would let the broker auto-create
        # a retry topic that does not exist yet (with its default partition count)
        partitions: dict[str, list[int]] = {
            meta["topic"]: sorted(p["partition"] for p in meta["partitions"])
            for meta in await admin.describe_topics()
            if meta["topic"] in names and meta["error_code"] == 0 and meta["partitions"]
        }
        tps = [structs.TopicPartition(t, p) for t in names for p in partitions.get(t, ())]
        if not tps:
            return []
        offsets = await self._consumer()
        ends = await offsets.end_offsets(tps)
        starts = await offsets.beginning_offsets(tps)
        lags: list[PartitionLag] = []
        for group, topics in wanted.items():
            mine = [tp for tp in tps if tp.topic in topics]
            committed = await admin.list_consumer_group_offsets(group, partitions=mine)
            for tp in mine:
                done = committed.get(tp)
                position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                lag = max(0, ends[tp] - position)
                lags.append(PartitionLag(group, tp.topic, tp.partition, lag))
        return lags

    async def _consumer(self) -> Any:
        if self._offsets is None:
            consumer = self._bus.aiokafka.AIOKafkaConsumer(
                bootstrap_servers=self._bus.bootstrap_servers.split(","),
                client_id="pigeon-lag",
                group_id=None,
                enable_auto_commit=False,
            )
            await consumer.start()
            self._offsets = consumer
        return self._offsets

    async def close(self) -> None:
        """Close the offsets consumer, if one was opened."""
        consumer, self._offsets = self._offsets, None
        if consumer is not None:
            await consumer.stop()
