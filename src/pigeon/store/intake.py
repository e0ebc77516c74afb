"""The API's own SQLite file: accepted notifications and status callbacks, appended.

Embedded default only. SQLite lets one transaction write a file at a time; when
the API committed into the store's file, every accept queued behind the workers'
transactions (effects, attempts, projections: the longer ones), and under load
the API spent half its time waiting for that lock. So the API writes into a file
of its own, ``<database>-intake``, which only the API (and the relay's clean-up)
ever writes:

- an accepted notification is one row of ``intake_notifications``: the
  notification's columns in the form the store keeps them, and where its request
  event goes in the log (the event itself is written by SQLite from the row's
  columns when the row is moved, unless it carries a trace: then it is here whole);
- a status callback is one row of ``intake_callbacks`` (the provider's delivery
  report, :meth:`~pigeon.domain.delivery.DeliveryReport.to_json`);
- idempotency keys live here too, so an accept with a key stays one transaction.

A ``202`` still means committed: the row is in the intake file's WAL before the
answer. The **intake relay** (every worker process runs one, see
:class:`pigeon.services.intake_relay.IntakeRelay`) moves rows into the store's
file in order, in one store transaction per chunk that also advances its
position (``intake_positions``), so each row is moved exactly once, whatever is
killed when. It reads the intake file without any lock (WAL readers never block
the writer) and forgets moved rows later in short transactions.

Reading a notification looks in the store first, then here (not yet moved),
then in the store again (moved meanwhile): rows are forgotten here only after
the store has them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import operator
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement

from pigeon.bus.partitioning import partition_for
from pigeon.bus.sqlite_schema import INSERT_LOG, configure, touch
from pigeon.domain.delivery import DeliveryReport
from pigeon.domain.events import TOPIC_SMS_REQUESTED
from pigeon.domain.notification import Notification
from pigeon.providers.twilio_reports import upgrade_stored_callback
from pigeon.store import sqlite_rows
from pigeon.store.event_log import SqliteEventLog
from pigeon.store.rows import REQUEST_HEADERS, notification_values, request_event_sql
from pigeon.store.schema import idempotency_keys, notifications

metadata = MetaData()

#: the notification columns an accepted notification carries (the rest start empty)
NOTIFICATION_COLUMNS = (
    "id",
    "account_id",
    "channel",
    "recipient",
    "from_number",
    "body",
    "metadata",
    "segments",
    "encoding",
    "status",
    "created_at",
)
_EVENT_COLUMNS = ("topic", "partition", "key", "value", "headers", "logged_at")

intake_notifications = Table(
    "intake_notifications",
    metadata,
    # AUTOINCREMENT: never reused after the relay forgets rows, so a position stays valid
    Column("seq", Integer, primary_key=True, autoincrement=True),
    *(
        Column(
            c.name,
            c.type,
            nullable=c.nullable,
            unique=c.name == "id",
        )
        for name in NOTIFICATION_COLUMNS
        for c in [notifications.c[name]]
    ),
    # the request event, as the bus log keeps it (``value`` empty: written at the move)
    Column("topic", String(200), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("key", String(200), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("logged_at", Float, nullable=False),
    sqlite_autoincrement=True,
)

intake_callbacks = Table(
    "intake_callbacks",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("params", Text, nullable=False),
    sqlite_autoincrement=True,
)

#: the same table as the store's, in the intake file: a key is claimed with its notification
intake_idempotency_keys = idempotency_keys.to_metadata(metadata)

#: SQL writing a row's ``created_at`` (as ``sqlite_datetime`` stores it) as ``format_time`` does
_OCCURRED_AT = "replace(created_at, ' ', 'T') || 'Z'"
#: the request event of a row stored with an empty ``value``, written by SQLite from the
#: row's own columns when the relay moves it (see ``request_event_sql``)
_REQUEST_EVENT = f"CAST({request_event_sql('json_object', _OCCURRED_AT)} AS BLOB)"
_SELECT_NOTIFICATIONS = (
    f"SELECT seq, {', '.join(NOTIFICATION_COLUMNS)}, topic, partition, key, "
    f"CASE WHEN length(value) > 0 THEN value ELSE {_REQUEST_EVENT} END AS value, headers, "
    "logged_at FROM intake_notifications WHERE seq > ? ORDER BY seq LIMIT ?"
)
#: the same rows as one JSON array of arrays, ``value`` in hex and ``logged_at`` in 17
#: digits (JSON's 15 would round it): one step of the statement.
#: ``sqlite3`` lets go of the GIL at each step, and a thread stepping once per row beside
#: a busy event loop waited for the GIL at nearly every row (500 rows: 123-210 ms, against
#: 1.4 ms with the loop idle; ``pigeon.store.sqlite_rows`` says more)
_SELECT_NOTIFICATIONS_AT_ONCE = (
    f"SELECT json_group_array(json_array(seq, {', '.join(NOTIFICATION_COLUMNS)}, topic, "
    f"partition, key, hex(value), headers, printf('%!.17g', logged_at))) "
    f"FROM ({_SELECT_NOTIFICATIONS})"
)
_SELECT_CALLBACKS = "SELECT seq, params FROM intake_callbacks WHERE seq > ? ORDER BY seq LIMIT ?"
_INSERT_NOTIFICATION = (
    f"INSERT INTO notifications ({', '.join(NOTIFICATION_COLUMNS)}, attempts, updated_at) "
    f"VALUES ({', '.join('?' * len(NOTIFICATION_COLUMNS))}, 0, ?)"
)
#: one accepted notification (parameters: :func:`accepted_params`)
INSERT_INTAKE = (
    f"INSERT INTO intake_notifications ({', '.join(NOTIFICATION_COLUMNS)}, "
    f"{', '.join(_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(NOTIFICATION_COLUMNS) + len(_EVENT_COLUMNS)))})"
)
_POSITIONS = "SELECT name, seq FROM intake_positions"
_SET_POSITION = "INSERT OR REPLACE INTO intake_positions (name, seq) VALUES (?, ?)"
_CREATED = NOTIFICATION_COLUMNS.index("created_at")
#: a row's values in :data:`NOTIFICATION_COLUMNS` order, picked in C
_COLUMNS_OF = operator.itemgetter(*NOTIFICATION_COLUMNS)
_SEQ = operator.itemgetter(0)

#: applies delivery reports in the store's transaction (see ``SqlStore``)
CallbackApplier = Callable[[Connection, list[DeliveryReport]], list[bool]]


def intake_path(database: Path) -> Path:
    """The intake file beside the store's SQLite file."""
    return database.with_name(database.name + "-intake")


def create_intake(path: Path) -> None:
    """Create the intake file's tables (idempotent, safe from several processes at once:
    one ``BEGIN IMMEDIATE`` transaction of ``CREATE … IF NOT EXISTS``, not SQLAlchemy's
    look-then-create, which two processes starting together both passed)."""
    statements: list[ExecutableDDLElement] = []
    for table in metadata.sorted_tables:
        statements.append(CreateTable(table, if_not_exists=True))
        statements.extend(CreateIndex(index, if_not_exists=True) for index in table.indexes)
    dialect = sqlite_dialect()
    ddl = [str(statement.compile(dialect=dialect)).strip() for statement in statements]
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        configure(conn)
        conn.execute("PRAGMA busy_timeout=10000")  # once per process: plain waiting is fine
        conn.executescript("BEGIN IMMEDIATE;\n" + ";\n".join(ddl) + ";\nCOMMIT;")
        _upgrade_kept_callbacks(conn)
    finally:
        conn.close()


def _upgrade_kept_callbacks(conn: sqlite3.Connection) -> None:
    """Callbacks an older version appended as raw provider forms, as delivery reports
    (the same conversion as the store's migration 0004)."""
    rows = conn.execute("SELECT seq, params FROM intake_callbacks").fetchall()
    upgraded = [(new, seq) for seq, params in rows if (new := upgrade_stored_callback(params))]
    if upgraded:
        with conn:
            conn.executemany("UPDATE intake_callbacks SET params = ? WHERE seq = ?", upgraded)


def accepted_params(notification: Notification, log: SqliteEventLog) -> tuple[Any, ...]:
    """The parameters of :data:`INSERT_INTAKE` for an accepted notification: its columns
    and its request event, bound as SQLAlchemy would bind them (a raw insert skips
    SQLAlchemy's per-row parameter processing: a fifth of a batch's cost).

    The event's ``value`` is left empty, for SQLite to write at the move
    (:data:`_REQUEST_EVENT`), unless the event continues a trace: its headers then
    carry the trace, and it is written here whole.
    """
    values = notification_values(notification)  # the store's one definition of the columns
    values["created_at"] = sqlite_datetime(notification.created_at)
    columns: tuple[Any, ...] = _COLUMNS_OF(values)
    if notification.trace is not None:
        (event,) = log.params([notification.requested_event()])
        return (*columns, *event)
    key = notification.to  # as ``route`` keys a request: by recipient
    partition = partition_for(key, log.partitions_of(TOPIC_SMS_REQUESTED))
    return (*columns, TOPIC_SMS_REQUESTED, partition, key, b"", REQUEST_HEADERS, time.time())


@functools.lru_cache(maxsize=256)
def sqlite_datetime(value: datetime) -> str:
    """A time as SQLAlchemy's SQLite ``DateTime`` stores it (UTC, no offset); remembered,
    as the notifications of one batch share their creation time."""
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


#: one provider delivery report (a status callback), as ``DeliveryReport.to_json``
INSERT_INTAKE_CALLBACK = "INSERT INTO intake_callbacks (params) VALUES (?)"


@dataclass(frozen=True, slots=True)
class Moved:
    """What one relay step moved, and the positions it reached."""

    notifications: int
    callbacks: int
    notifications_seq: int
    callbacks_seq: int
    #: callbacks whose message id no attempt has recorded yet (kept until it does)
    kept: int = 0


def positions(raw: sqlite3.Connection) -> tuple[int, int]:
    """``(notifications, callbacks)``: the last intake rows the store has."""
    found = dict(raw.execute(_POSITIONS).fetchall())
    return int(found.get("notifications", 0)), int(found.get("callbacks", 0))


def move_chunk(
    conn: Connection,
    intake: sqlite3.Connection,
    apply_callbacks: CallbackApplier,
    limit: int,
) -> Moved:
    """Move up to ``limit`` notifications and callbacks into the store, in ``conn``'s
    open transaction, with the new positions; ``intake`` is a connection to the intake
    file (read only here)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    at_n, at_c = positions(raw)
    rows = _notifications_after(intake, at_n, limit)
    if rows:
        width = len(NOTIFICATION_COLUMNS)
        moved = [(*r[1 : width + 1], r[1 + _CREATED]) for r in rows]
        sqlite_rows.insert_many(raw, _INSERT_NOTIFICATION, moved)
        sqlite_rows.insert_many(raw, INSERT_LOG, [r[width + 1 :] for r in rows])
        touch({r[width + 1] for r in rows})  # the topic: rung after the commit
        at_n = rows[-1][0]
        raw.execute(_SET_POSITION, ("notifications", at_n))
    callbacks = intake.execute(_SELECT_CALLBACKS, (at_c, limit)).fetchall()
    kept = 0
    if callbacks:
        found = apply_callbacks(conn, [DeliveryReport.from_json(p) for _, p in callbacks])
        kept = found.count(False)
        at_c = callbacks[-1][0]
        raw.execute(_SET_POSITION, ("callbacks", at_c))
    return Moved(len(rows), len(callbacks), at_n, at_c, kept)


def _notifications_after(intake: sqlite3.Connection, seq: int, limit: int) -> list[tuple[Any, ...]]:
    """Up to ``limit`` intake rows after ``seq``, in order, as :data:`_SELECT_NOTIFICATIONS`
    returns them (read in one step: :data:`_SELECT_NOTIFICATIONS_AT_ONCE`)."""
    (found,) = intake.execute(_SELECT_NOTIFICATIONS_AT_ONCE, (seq, limit)).fetchone()
    rows = [(*r[:-3], bytes.fromhex(r[-3]), r[-2], float(r[-1])) for r in orjson.loads(found)]
    rows.sort(key=_SEQ)  # an aggregate's order is SQLite's to choose
    return rows


def forget(intake: sqlite3.Connection, notifications_seq: int, callbacks_seq: int) -> int:
    """Delete intake rows the store has (in ``intake``'s open write transaction)."""
    gone = intake.execute(
        "DELETE FROM intake_notifications WHERE seq <= ?", (notifications_seq,)
    ).rowcount
    gone += intake.execute("DELETE FROM intake_callbacks WHERE seq <= ?", (callbacks_seq,)).rowcount
    return int(gone)


def move_all(
    conn: Connection, path: Path, apply_callbacks: CallbackApplier, limit: int = 512
) -> int:
    """Move everything the intake file at ``path`` holds, in ``conn``'s open transaction.

    What the relay does chunk by chunk, at once: for tools and tests that read the
    store of an API with no worker running. Returns how many rows moved.
    """
    total = 0
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as intake:
        while True:
            moved = move_chunk(conn, intake, apply_callbacks, limit)
            total += moved.notifications + moved.callbacks
            if moved.notifications < limit and moved.callbacks < limit:
                return total


class RelayLock:
    """Which worker process moves the intake: whoever holds ``<intake>-relay.lock``.

    An exclusive, non-blocking ``flock``: one relay moves, the others stand by and
    try again now and then; the kernel lets go of the lock of a process that dies,
    ``kill -9`` included.
    """

    def __init__(self, intake: Path) -> None:
        self.path = intake.with_name(intake.name + "-relay.lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Let another process's relay take over."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock
