"""Appending events inside a store transaction: the transactional outbox, two ways.

Embedded default: the log table lives in the store's own SQLite file, so the
event row written here *is* the bus entry, committed together with the state
change or not at all (:class:`SqliteEventLog`).

Kafka: the event row goes to the store's ``outbox`` table in the same
transaction (:class:`OutboxEventLog`); the outbox relay publishes it to Kafka
and deletes it once the broker has acknowledged it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import Executable

from pigeon.bus.port import HEADER_EVENT_TYPE
from pigeon.bus.sqlite_schema import log_row
from pigeon.domain.events import Event, encode, route, utcnow
from pigeon.store.schema import outbox

INSERT_EVENT = text(
    "INSERT INTO bus_log (topic, partition, key, value, headers, created_at) "
    "VALUES (:topic, :partition, :key, :value, :headers, :created_at)"
)
_COLUMNS = ("topic", "partition", "key", "value", "headers", "created_at")


class EventLog(Protocol):
    """Where a store transaction puts the events it publishes."""

    #: the insert statement :meth:`rows` are parameters of
    statement: Executable

    def rows(self, events: Sequence[Event]) -> list[dict[str, Any]]:
        """The insert parameters of ``events``."""
        ...


class SqliteEventLog:
    """Writes events to ``bus_log`` with the partition counts the bus registered."""

    statement: Executable = INSERT_EVENT

    def __init__(self, partitions: dict[str, int], default_partitions: int) -> None:
        self._partitions = partitions
        self._default = default_partitions

    def rows(self, events: Sequence[Event]) -> list[dict[str, Any]]:
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


class OutboxEventLog:
    """Writes events to the ``outbox`` table; the relay chooses partitions when publishing."""

    statement: Executable = insert(outbox)

    def rows(self, events: Sequence[Event]) -> list[dict[str, Any]]:
        """The insert parameters of ``events``."""
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for event in events:
            topic, key = route(event)
            rows.append(
                {
                    "topic": topic,
                    "key": key,
                    "value": encode(event),
                    "headers": orjson.dumps({HEADER_EVENT_TYPE: event.type_name}).decode(),
                    "created_at": now,
                }
            )
        return rows


async def append(log: EventLog, conn: AsyncConnection, events: Sequence[Event]) -> None:
    """Insert ``events`` in ``conn``'s open transaction."""
    if events:
        await conn.execute(log.statement, log.rows(events))
