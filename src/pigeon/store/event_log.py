"""Appending events inside a store transaction (the embedded transactional outbox).

On the embedded default the log table lives in the store's own SQLite file,
so the event row written here *is* the bus entry: committed together with the
state change, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.bus.port import HEADER_EVENT_TYPE
from pigeon.bus.sqlite_schema import log_row
from pigeon.domain.events import Event, encode, route

INSERT_EVENT = text(
    "INSERT INTO bus_log (topic, partition, key, value, headers, created_at) "
    "VALUES (:topic, :partition, :key, :value, :headers, :created_at)"
)
_COLUMNS = ("topic", "partition", "key", "value", "headers", "created_at")


class SqliteEventLog:
    """Writes events to ``bus_log`` with the partition counts the bus registered."""

    def __init__(self, partitions: dict[str, int], default_partitions: int) -> None:
        self._partitions = partitions
        self._default = default_partitions

    def rows(self, events: Sequence[Event]) -> list[dict[str, object]]:
        """The insert parameters of ``events``."""
        rows = []
        for event in events:
            topic, key = route(event)
            partitions = self._partitions.get(topic, self._default)
            values = log_row(
                topic, partitions, key, encode(event), {HEADER_EVENT_TYPE: event.type_name}
            )
            rows.append(dict(zip(_COLUMNS, values, strict=True)))
        return rows

    async def append(self, conn: AsyncConnection, events: Sequence[Event]) -> None:
        """Insert ``events`` in ``conn``'s open transaction."""
        if events:
            await conn.execute(INSERT_EVENT, self.rows(events))
