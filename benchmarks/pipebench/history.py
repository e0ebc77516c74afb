"""A store with a long history, made fast: real traffic, copied (issue 9, target 9).

"Cost does not grow with history": the drain rate with 1,000,000 delivered
notifications already in the store and the log must stay within 10 % of a fresh
store's. Sending a million SMS through the pipeline would take a quarter of an
hour before every measurement, so :func:`multiply` copies a few thousand real
ones instead (sent through the whole pipeline first): every row a delivered
notification leaves - the notification, its timeline, its send attempts, the
consumers' processed-event records, its events in the log - again and again,
each copy under new ids whose ULID time lies up to ``span`` earlier (so the
copies sort before the real rows, as older history would), until the store holds
``total`` notifications. Every consumer group's position then moves to the end
of the log: the history has been consumed, as it would have been.

Timestamps stay those of the real rows, all within the last hours, so retention
(24 h for the log, 30 days for notifications) removes none of it during the
measurement: the worst case, everything still in the store and the log.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pigeon.domain.ids import EVENT_PREFIX, NOTIFICATION_PREFIX, ulid

#: the tables a delivered notification leaves rows in; each with how to copy a row
TABLES = ("notifications", "timeline", "send_attempts", "processed_events", "bus_log")
#: columns whose values are ids a copy must not share with the original
ID_COLUMNS = {"id", "notification_id", "event_id", "provider_message_id"}
BATCH = 20_000


def _columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    """(copied columns, auto-numbered primary key columns left out)."""
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    key = [row for row in info if row[5]]
    # a lone INTEGER primary key is the rowid: SQLite numbers it
    auto = [key[0][1]] if len(key) == 1 and key[0][2].upper() == "INTEGER" else []
    return [row[1] for row in info if row[1] not in auto], auto


class _Renamer:
    """New ids for copy ``j``: the same id always maps to the same new one."""

    def __init__(self, copy: int, span_ms: int, copies: int) -> None:
        self.now_ms = int(time.time() * 1000) - (span_ms * copy) // max(1, copies)
        self.seen: dict[str, str] = {}

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        new = self.seen.get(value)
        if new is None:
            if value.startswith((NOTIFICATION_PREFIX, EVENT_PREFIX)):
                new = value[:4] + ulid(self.now_ms)
            else:  # a provider's message SID: keep its shape, change its tail
                new = value[:2] + ulid(self.now_ms)[-(len(value) - 2) :].lower()
            self.seen[value] = new
        return new


def _copies(
    rows: list[tuple[Any, ...]], columns: list[str], rename: Callable[[Any], Any]
) -> Iterator[tuple[Any, ...]]:
    renamed = [i for i, c in enumerate(columns) if c in ID_COLUMNS]
    for row in rows:
        copy = list(row)
        for i in renamed:
            copy[i] = rename(copy[i])
        yield tuple(copy)


def multiply(db_path: Path, total: int, *, span_hours: float = 16.0) -> dict[str, Any]:
    """Copy the store's delivered history until it holds ``total`` notifications."""
    started = time.monotonic()
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=60)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        real = conn.execute("SELECT count(*) FROM notifications").fetchone()[0]
        if real == 0:
            raise RuntimeError("no notifications to copy: send some first")
        copies = max(0, round((total - real) / real))  # whole copies: about ``total``
        originals = {}
        for table in TABLES:
            columns, _ = _columns(conn, table)
            query = f"SELECT {', '.join(columns)} FROM {table}"
            originals[table] = (columns, conn.execute(query).fetchall())
        made = dict.fromkeys(TABLES, 0)
        span_ms = int(span_hours * 3600 * 1000)
        for j in range(1, copies + 1):
            rename = _Renamer(j, span_ms, copies)
            conn.execute("BEGIN IMMEDIATE")
            for table, (columns, rows) in originals.items():
                insert = (
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' for _ in columns)})"
                )
                copied = list(_copies(rows, columns, rename))
                for start in range(0, len(copied), BATCH):
                    conn.executemany(insert, copied[start : start + BATCH])
                made[table] += len(copied)
            conn.execute("COMMIT")
        # the copies are history every group has consumed: each position to the log's end
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE bus_offsets SET position = (SELECT max(l.id) FROM bus_log l "
            "WHERE l.topic = bus_offsets.topic AND l.partition = bus_offsets.partition) "
            "WHERE EXISTS (SELECT 1 FROM bus_log l "
            "WHERE l.topic = bus_offsets.topic AND l.partition = bus_offsets.partition)"
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES
        }
    finally:
        conn.close()
    return {
        "real_notifications": real,
        "copies": copies,
        "rows_added": made,
        "rows_now": counts,
        "database_mb": round(db_path.stat().st_size / 1e6, 1),
        "seconds": round(time.monotonic() - started, 1),
    }
