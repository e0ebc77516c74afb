"""The embedded event bus: an append-only log table in a SQLite file.

Safe across processes on one machine. Consumer groups share a topic's
partitions through leases: every member heartbeats a row in ``bus_members``;
the live members, sorted, split the partitions round-robin; a member claims
the partitions assigned to it once their previous holder released them or
its lease expired (``kill -9`` recovery takes at most one lease period).
A settle commits only while the member still holds the partition's lease,
so a member that lost its partition cannot move the group's position.

Writes and reads: every write of the bus (publishing, heartbeats, settling)
goes through the process's one writer - the store's group committer once
:meth:`SqliteEventBus.attach_writer` is called, so a worker's settle shares
commits with its effects and a process never contends with itself for the
write lock - and every read through one reader thread per process.

Wake-ups: a consumer is woken at once by a commit in its own process and by
a ring of the :class:`~pigeon.bus.doorbell.Doorbell` from any other process;
a slow fallback poll (``poll_interval``) covers a lost ring. Nothing spins
while there is no work.

Retention: :meth:`SqliteEventBus.compact_log` deletes old rows every group has
read, in short chunks (see :mod:`pigeon.bus.sqlite_retention`); the retention
service of the status-projector worker calls it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson

from pigeon.bus import sqlite_retention
from pigeon.bus.doorbell import Topics
from pigeon.bus.port import Batch, Message
from pigeon.bus.sqlite_consumer import SqliteConsumer
from pigeon.bus.sqlite_schema import INSERT_LOG, create_schema, log_row
from pigeon.bus.sqlite_signals import CommitSignals
from pigeon.bus.sqlite_thread import SqliteThread
from pigeon.errors import BusUnavailable, PigeonError

T = TypeVar("T")
#: runs a function on a sqlite3 connection inside a write transaction
Writer = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]

log = logging.getLogger(__name__)

__all__ = ["Batch", "Message", "SqliteConsumer", "SqliteEventBus"]


class SqliteEventBus:
    """:class:`~pigeon.bus.port.EventBus` over one SQLite file."""

    #: messages a consumer takes per fetch, per partition. Measured (`pigeon run`, 20,000
    #: drain): 64 against 256 - resident memory 164 -> 141 MB (smaller high-water marks),
    #: drain and max accepted/s no lower, shorter worker transactions under the write lock
    fetch_size = 64

    def __init__(
        self,
        path: Path,
        *,
        default_partitions: int = 8,
        lease_seconds: float = 5.0,
        poll_interval: float = 1.0,
        synchronous: str = "NORMAL",
        readers: sqlite_retention.Readers | None = None,
    ) -> None:
        self.path = path
        #: topic -> groups that must read all of it, joined yet or not (log compaction)
        self.readers: sqlite_retention.Readers = dict(readers or {})
        self.default_partitions = default_partitions
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.synchronous = synchronous
        #: reads of every consumer of this process, and writes until a writer is attached
        self._db = SqliteThread(path, synchronous)
        self._writer: Writer[object] | None = None
        self._partitions: dict[str, int] = {}
        self._consumers: set[SqliteConsumer] = set()
        #: called like consumers' wakes (log tails: the API's live streams)
        self._watchers: set[Callable[[], None]] = set()
        self._signals = CommitSignals(path, synchronous, self._wake_local)
        #: topics the store's writer thread has committed to and no ring has named yet
        self._committed: set[str] = set()
        self._committed_lock = threading.Lock()

    async def start(self) -> None:
        """Create the log tables if needed, open the connection and start listening."""
        await asyncio.to_thread(create_schema, self.path)
        await self._db.open()
        await self._signals.start()

    async def stop(self) -> None:
        """Close the connection (consumers are stopped by their owners)."""
        await self._signals.stop()
        await self._db.close()

    def attach_writer(self, writer: Writer[object]) -> None:
        """Write through ``writer`` (the store's group committer) from now on."""
        self._writer = writer

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction of this process's writer."""
        if self._writer is None:
            return await self._db.run(self._db.transaction, fn)
        try:
            return await self._writer(fn)  # type: ignore[return-value]  # fn's own T
        except sqlite3.Error as exc:
            raise BusUnavailable(f"SQLite event log {self.path}: {exc}") from exc
        except PigeonError as exc:
            if isinstance(exc, BusUnavailable):
                raise
            raise BusUnavailable(f"SQLite event log {self.path}: {exc}") from exc

    async def run_read(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(conn, *args)`` in this process's reader thread."""
        return await self._db.run(lambda: fn(self._db.conn, *args))

    async def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        """Register ``topic``; an existing topic keeps its partition count."""
        await self.partitions(topic, partitions)

    async def partitions(self, topic: str, create_with: int | None = None) -> int:
        """The partition count of ``topic``, creating the topic if it is new."""
        known = self._partitions.get(topic)
        if known is not None:
            return known
        wanted = create_with or self.default_partitions

        def _ensure(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT OR IGNORE INTO bus_topics (name, partitions) VALUES (?, ?)",
                (topic, wanted),
            )
            row = conn.execute(
                "SELECT partitions FROM bus_topics WHERE name = ?", (topic,)
            ).fetchone()
            return int(row[0])

        count = await self.write(_ensure)
        self._partitions[topic] = count
        return count

    async def publish(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Append one message and commit it."""
        partitions = await self.partitions(topic)
        row = log_row(topic, partitions, key, value, headers)
        await self.write(lambda conn: conn.execute(INSERT_LOG, row))
        self.wake()

    def wake(self, topics: Topics = None) -> None:
        """New entries were committed to ``topics`` (None: not known): wake this process's
        consumers of them and ring the others."""
        self._signals.committed(topics)

    def committed_topics(self, topics: frozenset[str]) -> None:
        """The store's writer thread committed a transaction that wrote to ``topics``.

        Called in that thread right after the commit, before the transaction's
        callers are answered, so the :meth:`wake_committed` that follows names
        only committed topics and misses none.
        """
        if topics:
            with self._committed_lock:
                self._committed.update(topics)

    def wake_committed(self) -> None:
        """After a store commit: wake the consumers of what was committed since the last
        call (nobody's, when nothing was written to the log)."""
        with self._committed_lock:
            topics, self._committed = self._committed, set()
        self._signals.committed(frozenset(topics))

    def _wake_local(self, topics: Topics) -> None:
        for consumer in self._consumers:
            if topics is None or consumer.topic in topics:
                consumer.wake()
        for watcher in self._watchers:
            watcher()

    def watch(self, on_news: Callable[[], None]) -> None:
        """Call ``on_news`` whenever new entries may be in the log (a tail's wake-up)."""
        self._watchers.add(on_news)

    def unwatch(self, on_news: Callable[[], None]) -> None:
        """Stop calling ``on_news``."""
        self._watchers.discard(on_news)

    def consumer(
        self, topic: str, group: str, *, dead_letter_topic: str, linger_seconds: float = 0.0
    ) -> SqliteConsumer:
        """A new member of ``group`` reading ``topic`` (see the port for ``linger_seconds``)."""
        member = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        consumer = SqliteConsumer(
            self, topic, group, dead_letter_topic, member, linger_seconds=linger_seconds
        )
        self._consumers.add(consumer)
        return consumer

    async def listen(self) -> None:
        """Hear other processes' commits (a process with consumers; see the doorbell)."""
        await self._signals.listen()

    def forget(self, consumer: SqliteConsumer) -> None:
        """Drop a stopped consumer from the wake-up list."""
        self._consumers.discard(consumer)

    async def compact_log(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` log rows every group has read, written before ``before``.

        One short write transaction; returns how many rows went (see
        :mod:`pigeon.bus.sqlite_retention`).
        """
        moment, readers = before.timestamp(), self.readers
        return await self.write(
            lambda conn: sqlite_retention.compact_chunk(conn, moment, limit, readers)
        )

    async def redelivery_horizon(self) -> datetime | None:
        """When the oldest log row some group may still be given was written, if any."""
        oldest = await self.run_read(sqlite_retention.redelivery_horizon, self.readers)
        return None if oldest is None else datetime.fromtimestamp(oldest, UTC)

    async def read(self, topic: str, after: int = 0, limit: int = 1000) -> list[Message]:
        """Read ``topic`` from the start, outside any group (operators, tests)."""

        def _read() -> list[Message]:
            rows = self._db.conn.execute(
                "SELECT id, partition, key, value, headers FROM bus_log "
                "WHERE topic = ? AND id > ? ORDER BY id LIMIT ?",
                (topic, after, limit),
            ).fetchall()
            return [
                Message(topic, part, offset, key, bytes(value), orjson.loads(headers))
                for offset, part, key, value, headers in rows
            ]

        return await self._db.run(_read)
