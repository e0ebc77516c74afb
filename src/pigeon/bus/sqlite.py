"""The embedded event bus: an append-only log table in a SQLite file.

Safe across processes on one machine. Consumer groups share a topic's
partitions through leases: every member heartbeats a row in ``bus_members``;
the live members, sorted, split the partitions round-robin; a member claims
the partitions assigned to it once their previous holder released them or
its lease expired (``kill -9`` recovery takes at most one lease period).
A settle commits only while the member still holds the partition's lease,
so a member that lost its partition cannot move the group's position.

Wake-ups: a consumer is woken at once by a publish in its own process and
otherwise polls a single ``max(id)`` every few milliseconds - far below the
50 ms pickup target, and cheap enough to idle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import uuid
from collections.abc import Mapping
from pathlib import Path

import orjson

from pigeon.bus.port import Batch, Message
from pigeon.bus.sqlite_consumer import SqliteConsumer
from pigeon.bus.sqlite_schema import INSERT_LOG, create_schema, log_row
from pigeon.bus.sqlite_thread import SqliteThread

log = logging.getLogger(__name__)

__all__ = ["Batch", "Message", "SqliteConsumer", "SqliteEventBus"]


class SqliteEventBus:
    """:class:`~pigeon.bus.port.EventBus` over one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        default_partitions: int = 8,
        lease_seconds: float = 5.0,
        poll_interval: float = 0.005,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = path
        self.default_partitions = default_partitions
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.synchronous = synchronous
        self._db = SqliteThread(path, synchronous)
        self._partitions: dict[str, int] = {}
        self._consumers: set[SqliteConsumer] = set()

    async def start(self) -> None:
        """Create the log tables if needed and open the publishing connection."""
        await asyncio.to_thread(create_schema, self.path)
        await self._db.open()

    async def stop(self) -> None:
        """Close the publishing connection (consumers are stopped by their owners)."""
        await self._db.close()

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

        count = await self._db.run(self._db.transaction, _ensure)
        self._partitions[topic] = count
        return count

    async def publish(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Append one message and commit it."""
        partitions = await self.partitions(topic)
        row = log_row(topic, partitions, key, value, headers)
        await self._db.run(self._db.transaction, lambda conn: conn.execute(INSERT_LOG, row))
        self.wake()

    def wake(self) -> None:
        """Tell this process's consumers that new entries were committed."""
        for consumer in self._consumers:
            consumer.wake()

    def consumer(self, topic: str, group: str, *, dead_letter_topic: str) -> SqliteConsumer:
        """A new member of ``group`` reading ``topic``."""
        member = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        consumer = SqliteConsumer(self, topic, group, dead_letter_topic, member)
        self._consumers.add(consumer)
        return consumer

    def forget(self, consumer: SqliteConsumer) -> None:
        """Drop a stopped consumer from the wake-up list."""
        self._consumers.discard(consumer)

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
