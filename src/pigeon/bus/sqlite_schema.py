"""Tables of the SQLite event log, shared by the bus and the store.

The store appends events to ``bus_log`` inside its own transactions (the
event row *is* the log entry), so the schema lives apart from the bus code.
``bus_log.id`` is ``AUTOINCREMENT``: SQLite has one writer at a time, so ids
become visible in increasing order and are never reused - a safe offset.
``intake_positions`` is how far the intake relay has moved the API's intake file
into the store (see :mod:`pigeon.store.intake`).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson

from pigeon.bus.partitioning import partition_for

SCHEMA = """
CREATE TABLE IF NOT EXISTS bus_topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bus_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_log_topic_partition ON bus_log (topic, partition, id);
CREATE TABLE IF NOT EXISTS bus_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
);
CREATE TABLE IF NOT EXISTS bus_members (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (grp, topic, member)
);
CREATE TABLE IF NOT EXISTS bus_leases (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (grp, topic, partition)
);
CREATE TABLE IF NOT EXISTS bus_retries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    log_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    not_before REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS bus_retries_due ON bus_retries (grp, topic, partition, not_before);
CREATE TABLE IF NOT EXISTS intake_positions (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
"""

#: every writing connection's: checkpoints run in the background, never inside a commit
#: (see pigeon.bus.sqlite_checkpoint)
NO_AUTO_CHECKPOINT = "PRAGMA wal_autocheckpoint=0"
#: SQLite's memory in one process (page caches, statements) is held near this many bytes:
#: past it, SQLite reuses cached pages before it allocates more. The limit is the whole
#: process's, however many connections it has (``pigeon run``'s workers have eight, each
#: caching up to 2 MB of pages by default). Measured on those workers, a 20,000-message
#: drain peaked at 11.8 MB of SQLite memory and kept 5.7 MB; with the limit the process
#: ends the drain 6 MB smaller at the same rate (the pages a worker touches are the
#: log's and the tables' newest, and the file's pages stay in the system's cache).
SOFT_HEAP_LIMIT_BYTES = 4 * 1024 * 1024
SOFT_HEAP_LIMIT = f"PRAGMA soft_heap_limit={SOFT_HEAP_LIMIT_BYTES}"

INSERT_LOG = (
    "INSERT INTO bus_log (topic, partition, key, value, headers, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def configure(conn: sqlite3.Connection, synchronous: str = "NORMAL") -> None:
    """Pragmas every connection to a Pigeon SQLite file uses (WAL, busy timeout)."""
    _switch_to_wal(conn)
    # checkpoints run in the background (see sqlite_checkpoint), never inside a commit
    conn.execute(NO_AUTO_CHECKPOINT)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=2")  # BEGIN IMMEDIATE is retried by SqliteThread
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(SOFT_HEAP_LIMIT)


#: how long a connection keeps asking for WAL mode while other connections hold the file
WAL_SWITCH_SECONDS = 10.0


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the file.

    On a new file, connections opened at the same moment (the workers of a split
    deployment starting together) all try the switch; SQLite then answers some of
    them "database is locked" at once, without waiting for the busy timeout (one
    of two connections that both hold a shared lock and want an exclusive one must
    give way). Seen in 5 of 150 runs of eight threads starting together.
    """
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.001, 0.01))


def create_schema(path: Path) -> None:
    """Create the log tables in ``path`` (idempotent, safe from several processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        configure(conn)
        conn.execute("PRAGMA busy_timeout=10000")  # once per process: plain waiting is fine
        conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
    finally:
        conn.close()


#: the topics the current thread's open transaction wrote to ``bus_log`` (see
#: :func:`touch`); one writer thread per store, one transaction at a time in it
_touched = threading.local()


def touch(topics: Iterable[str]) -> None:
    """Record that this thread's open transaction appends to ``topics`` (every insert
    into ``bus_log`` made in a store transaction says so, for the ring after its commit)."""
    seen: set[str] | None = getattr(_touched, "topics", None)
    if seen is None:
        seen = _touched.topics = set()
    seen.update(topics)


def take_touched() -> frozenset[str]:
    """The topics recorded since the last call (or :func:`forget_touched`), and forget them."""
    seen: set[str] | None = getattr(_touched, "topics", None)
    _touched.topics = set()
    return frozenset(seen or ())


def forget_touched() -> None:
    """A transaction starts (or rolled back): nothing it recorded was written."""
    _touched.topics = set()


def log_row(
    topic: str, partitions: int, key: str, value: bytes, headers: Mapping[str, str] | None
) -> tuple[str, int, str, bytes, str, float]:
    """The parameters of :data:`INSERT_LOG` for one message."""
    return (
        topic,
        partition_for(key, partitions),
        key,
        value,
        orjson.dumps(dict(headers or {})).decode(),
        time.time(),
    )
