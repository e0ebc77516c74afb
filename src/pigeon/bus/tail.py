"""Reading the log from a position, outside any consumer group: the live stream's source.

A consumer group *owns* its positions and shares partitions among members; a
tail owns nothing. It reads every partition of some topics from a
:class:`Position` the caller gives (one it got from an earlier read, or the
log's end), commits nothing, and can be dropped at any time. The API's
``GET /v1/notifications/stream`` opens one per connection; ``Last-Event-ID``
is a position, so a client that reconnects resumes exactly after the last event
it saw - no gap, and nothing twice, as long as the log still holds it (see
:attr:`TailRead.gap`).

* Embedded bus: ``bus_log.id`` is one sequence over every topic, visible in
  increasing order (SQLite has one writer), so a position is one number. A read
  waits for this process's commits and, through the bus's doorbell, for other
  processes' (with a slow fallback poll in case a ring is missed).
* Kafka: a position is an offset per (topic, partition). A tail is an
  ``AIOKafkaConsumer`` with no group, assigned every partition and seeked.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from pigeon.bus.kafka import KafkaEventBus
from pigeon.bus.kafka_wire import bus_error, message_from_record
from pigeon.bus.port import Message
from pigeon.bus.sqlite import SqliteEventBus
from pigeon.errors import ValidationError

#: an embedded position: ``e<bus_log id>``; a Kafka one: ``k<t>.<p>-<offset>_...``
_EMBEDDED = re.compile(r"e(\d{1,19})")
_KAFKA_PART = re.compile(r"(\d{1,3})\.(\d{1,5})-(\d{1,19})")
#: most messages one read returns
READ_LIMIT = 500


@dataclass(frozen=True)
class Position:
    """Where a tail stands: the next offset to read per (topic, partition).

    The embedded bus has one sequence over all topics: ``offsets`` then holds
    the single entry ``("", 0)`` - the last ``bus_log.id`` read.
    """

    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def encode(self, topics: Sequence[str]) -> str:
        """The opaque text form (an SSE event id): short, URL- and header-safe."""
        if ("", 0) in self.offsets:
            return f"e{self.offsets['', 0]}"
        index = {topic: i for i, topic in enumerate(topics)}
        parts = sorted((index[t], p, o) for (t, p), o in self.offsets.items())
        return "k" + "_".join(f"{t}.{p}-{o}" for t, p, o in parts)

    @classmethod
    def decode(cls, text: str, topics: Sequence[str], *, name: str) -> Position:
        """Parse :meth:`encode`'s form; anything else is a :class:`ValidationError` on ``name``."""
        text = text.strip()
        embedded = _EMBEDDED.fullmatch(text)
        if embedded:
            return cls({("", 0): int(embedded.group(1))})
        if text.startswith("k") and len(text) <= 4096:
            offsets: dict[tuple[str, int], int] = {}
            for part in text[1:].split("_"):
                match = _KAFKA_PART.fullmatch(part)
                if match is None or int(match.group(1)) >= len(topics):
                    break
                offsets[topics[int(match.group(1))], int(match.group(2))] = int(match.group(3))
            else:
                if offsets:
                    return cls(offsets)
        raise ValidationError(
            name, "is not an event id of this stream; reconnect without it to start from now"
        )


@dataclass(frozen=True)
class TailRead:
    """What one read found, and the position after it."""

    messages: list[tuple[Message, Position]]
    position: Position
    #: set when the log no longer holds some entries after the position asked for
    #: (retention compacted them): what the reader missed cannot be replayed
    gap: str = ""


class Tail(Protocol):
    """A reader of some topics from a position, outside any group."""

    topics: tuple[str, ...]

    async def open(self, start: Position | None) -> TailRead:
        """Start at ``start`` (``None``: the log's end); reports a gap if ``start`` is gone."""

    async def read(self, wait_seconds: float) -> TailRead:
        """What arrived after the current position, waiting up to ``wait_seconds`` for some."""

    async def close(self) -> None:
        """Let go of connections."""


def open_tail(bus: SqliteEventBus | KafkaEventBus, topics: Sequence[str]) -> Tail:
    """A tail of ``topics`` on ``bus``'s backend."""
    if isinstance(bus, SqliteEventBus):
        return SqliteTail(bus, tuple(topics))
    return KafkaTail(bus, tuple(topics))


class SqliteTail:
    """A tail of the embedded log: ``bus_log`` rows after one id."""

    #: a read rechecks the log this often even without a ring (a ring can be missed
    #: only when the doorbell's socket is momentarily full)
    fallback_seconds = 1.0

    def __init__(self, bus: SqliteEventBus, topics: tuple[str, ...]) -> None:
        self.topics = topics
        self._bus = bus
        self._after = 0
        self._news = asyncio.Event()

    async def open(self, start: Position | None) -> TailRead:
        await self._bus.listen()  # hear the workers' commits (the API has no consumers)
        self._bus.watch(self._news.set)
        first, last = await self._bus.run_read(_id_range)
        if start is None:
            self._after = last
            return TailRead([], self._position())
        if ("", 0) not in start.offsets:
            raise ValidationError("Last-Event-ID", "is an event id of a Kafka stream, not this one")
        self._after = min(start.offsets["", 0], last)
        gap = ""
        if self._after < (last if first is None else first - 1):
            gap = (
                f"the log no longer holds the events after id {self._after}: they were "
                "compacted (PIGEON_BUS_RETENTION_HOURS) and cannot be replayed"
            )
        return TailRead([], self._position(), gap)

    def _position(self) -> Position:
        return Position({("", 0): self._after})

    async def read(self, wait_seconds: float) -> TailRead:
        found = await self._read_now()
        if not found:
            self._news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), min(wait_seconds, self.fallback_seconds))
            found = await self._read_now()
        return TailRead(found, self._position())

    async def _read_now(self) -> list[tuple[Message, Position]]:
        rows = await self._bus.run_read(_rows_after, self._after, self.topics)
        found = []
        for offset, topic, part, key, value, headers in rows:
            self._after = offset
            message = Message(topic, part, offset, key, bytes(value), orjson.loads(headers))
            found.append((message, self._position()))
        return found

    async def close(self) -> None:
        self._bus.unwatch(self._news.set)


def _id_range(conn: Any) -> tuple[int | None, int]:
    """The first id the log still holds, and the last id it ever gave (``AUTOINCREMENT``
    keeps counting in ``sqlite_sequence`` when compaction empties the table)."""
    (first,) = conn.execute("SELECT min(id) FROM bus_log").fetchone()
    last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'bus_log'").fetchone()
    return (None if first is None else int(first)), int(last[0]) if last else 0


def _rows_after(conn: Any, after: int, topics: tuple[str, ...]) -> list[Any]:
    marks = ",".join("?" * len(topics))
    return list(
        conn.execute(
            "SELECT id, topic, partition, key, value, headers FROM bus_log "
            f"WHERE id > ? AND topic IN ({marks}) ORDER BY id LIMIT {READ_LIMIT}",
            (after, *topics),
        ).fetchall()
    )


class KafkaTail:
    """A tail of Kafka topics: a consumer with no group, every partition assigned."""

    def __init__(self, bus: KafkaEventBus, topics: tuple[str, ...]) -> None:
        self.topics = topics
        self._bus = bus
        self._consumer: Any = None
        self._next: dict[tuple[str, int], int] = {}

    async def open(self, start: Position | None) -> TailRead:
        aiokafka = self._bus.aiokafka
        settings = self._bus.consumer_settings
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            client_id=f"{settings.client_id}-stream",
            group_id=None,
            enable_auto_commit=False,
            # only for a position past the log's end (a recreated topic): start from now
            auto_offset_reset="latest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            request_timeout_ms=settings.request_timeout_ms,
        )
        try:
            await consumer.start()
            partitions = [
                aiokafka.TopicPartition(topic, p)
                for topic in self.topics
                for p in range(await self._bus.partitions(topic))
            ]
            consumer.assign(partitions)
            firsts = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
        except aiokafka.errors.KafkaError as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise bus_error(exc, "opening a stream of the log") from exc
        self._consumer = consumer
        if start is not None and ("", 0) in start.offsets:
            await self.close()
            raise ValidationError("Last-Event-ID", "is an event id of an embedded stream")
        missed = []
        for tp in partitions:
            first, end = int(firsts[tp]), int(ends[tp])
            wanted = end if start is None else start.offsets.get((tp.topic, tp.partition), 0)
            # not capped at ``end``: a broker may answer a stale end (Tansu: the last
            # batch's start + 1), and an id we handed out is never past the real end
            at = max(wanted, first)
            if start is not None and wanted < first:
                missed.append(f"{tp.topic}[{tp.partition}] {wanted}..{first - 1}")
            self._next[tp.topic, tp.partition] = at
            consumer.seek(tp, at)
        gap = (
            "compacted by the broker's retention, cannot be replayed: " + ", ".join(missed)
            if missed
            else ""
        )
        return TailRead([], self._position(), gap)

    def _position(self) -> Position:
        return Position(dict(self._next))

    async def read(self, wait_seconds: float) -> TailRead:
        errors = self._bus.aiokafka.errors
        try:
            batches = await self._consumer.getmany(
                timeout_ms=int(wait_seconds * 1000), max_records=READ_LIMIT
            )
        except errors.KafkaError as exc:
            raise bus_error(exc, "reading the log for a stream") from exc
        records = sorted(
            (r for rs in batches.values() for r in rs), key=lambda r: (r.timestamp, r.offset)
        )
        found = []
        for record in records:
            self._next[record.topic, record.partition] = record.offset + 1
            found.append((message_from_record(record), self._position()))
        return TailRead(found, self._position())

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
