"""Appending events inside a store transaction: the transactional outbox, two ways.

Embedded default: the log table lives in the store's own SQLite file, so the
event row written here *is* the bus entry, committed together with the state
change or not at all (:class:`SqliteEventLog`).

Kafka: the event row goes to the store's ``outbox`` table in the same
transaction (:class:`OutboxEventLog`); the outbox relay publishes it to Kafka
and deletes it once the broker has acknowledged it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.base import Executable

from pigeon.bus.port import HEADER_EVENT_TYPE
from pigeon.bus.sqlite_schema import INSERT_LOG, log_row, touch
from pigeon.domain.events import Event, encode, route, utcnow
from pigeon.store import sqlite_rows
from pigeon.store.pg_statements import insert_many
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

    def raw_rows(self, records: Sequence[RawRecord]) -> list[dict[str, Any]]:
        """The insert parameters of messages that are not our events (dead letters)."""
        ...


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A message to publish as it is: a dead letter carries the original bytes."""

    topic: str
    key: str
    value: bytes
    headers: Mapping[str, str]


class SqliteEventLog:
    """Writes events to ``bus_log`` with the partition counts the bus registered."""

    statement: Executable = INSERT_EVENT

    def __init__(self, partitions: dict[str, int], default_partitions: int) -> None:
        self._partitions = partitions
        self._default = default_partitions

    def rows(self, events: Sequence[Event]) -> list[dict[str, Any]]:
        """The insert parameters of ``events``."""
        return [dict(zip(_COLUMNS, values, strict=True)) for values in self.params(events)]

    def partitions_of(self, topic: str) -> int:
        """How many partitions ``topic`` has."""
        return self._partitions.get(topic, self._default)

    def params(self, events: Sequence[Event]) -> list[tuple[str, int, str, bytes, str, float]]:
        """The positional parameters of ``INSERT_LOG`` (the columns of ``bus_log``, in
        order) for ``events``: for raw multi-row inserts (``store.sqlite_rows``), with no
        per-row compiling."""
        params = []
        for event in events:
            topic, key = route(event)
            partitions = self.partitions_of(topic)
            headers = {HEADER_EVENT_TYPE: event.type_name}
            if event.trace is not None:  # traceparent (and tracestate): see pigeon.tracing
                headers.update(event.trace)
            params.append(log_row(topic, partitions, key, encode(event), headers))
        return params

    def raw_rows(self, records: Sequence[RawRecord]) -> list[dict[str, Any]]:
        """The insert parameters of ``records``."""
        return [dict(zip(_COLUMNS, values, strict=True)) for values in self.raw_params(records)]

    def raw_params(
        self, records: Sequence[RawRecord]
    ) -> list[tuple[str, int, str, bytes, str, float]]:
        """The positional parameters of ``INSERT_LOG`` for ``records``."""
        return [
            log_row(r.topic, self.partitions_of(r.topic), r.key, r.value, r.headers)
            for r in records
        ]


class OutboxEventLog:
    """Writes events to the ``outbox`` table; the relay chooses partitions when publishing."""

    statement: Executable = insert(outbox)

    def rows(self, events: Sequence[Event]) -> list[dict[str, Any]]:
        """The insert parameters of ``events``."""
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for event in events:
            topic, key = route(event)
            headers = {HEADER_EVENT_TYPE: event.type_name}
            if event.trace is not None:  # traceparent (and tracestate): see pigeon.tracing
                headers.update(event.trace)
            rows.append(
                {
                    "topic": topic,
                    "key": key,
                    "value": encode(event),
                    "headers": orjson.dumps(headers).decode(),
                    "created_at": now,
                }
            )
        return rows

    def raw_rows(self, records: Sequence[RawRecord]) -> list[dict[str, Any]]:
        """The insert parameters of ``records``."""
        now = utcnow()
        return [
            {
                "topic": r.topic,
                "key": r.key,
                "value": r.value,
                "headers": orjson.dumps(dict(r.headers)).decode(),
                "created_at": now,
            }
            for r in records
        ]


def append(
    log: EventLog,
    conn: Connection,
    events: Sequence[Event],
    raw: Sequence[RawRecord] = (),
) -> None:
    """Insert ``events`` (and ``raw`` messages) in ``conn``'s open transaction."""
    if isinstance(log, SqliteEventLog):
        # bound by hand (no SQLAlchemy parameter processing per row), and the topics
        # noted for the ring after the commit (pigeon.bus.doorbell)
        params = log.params(events) + log.raw_params(raw)
        if params:
            touch(row[0] for row in params)
            sqlite_rows.insert_many(conn, INSERT_LOG, params)
        return
    rows = log.rows(events) + log.raw_rows(raw)
    if isinstance(log, OutboxEventLog):
        insert_many(conn, outbox, rows)  # on PostgreSQL one statement, however many rows
    elif rows:
        conn.execute(log.statement, rows)
