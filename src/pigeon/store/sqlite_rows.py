"""Many rows in a few statements on SQLite: multi-row ``INSERT … VALUES (…), (…)``.

Why not ``executemany``: Python's ``sqlite3`` lets go of the GIL around every
``sqlite3_step``, and an ``executemany`` steps once per row. Our writes run in a
writer thread beside a busy event loop, and each time that thread wants the GIL
back it waits for the loop's thread to let go of it, up to the interpreter's
switch interval (0.5 ms in Pigeon's processes, see ``pigeon.cli``; Python's
default is 5 ms). Measured on 500 intake rows with a busy thread beside the
writer, at 0.5 ms: 97-120 ms as an ``executemany``, 10.6-14 ms as multi-row
statements (at 5 ms: 2.6-3.7 ms a row against 35-55 µs; 2 ms for the 500 either
way when nothing else runs). One statement per chunk pays that wait once per chunk.

A chunk is a power of two rows (at most :data:`MAX_CHUNK`, and never more
parameters than the connection allows), so a statement has a handful of shapes
and ``sqlite3``'s statement cache keeps them compiled. SQLite inserts a
``VALUES`` list's rows in order, so ``AUTOINCREMENT`` ids come out as an
``executemany`` would give them, and a failing row fails the statement inside
the caller's transaction, which is rolled back as a whole either way.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

#: the most rows one statement carries (more: a few statements)
MAX_CHUNK = 256
#: SQLite's parameter limit before 3.32 (``SQLITE_MAX_VARIABLE_NUMBER``)
_OLDEST_LIMIT = 999
#: ``INSERT … VALUES`` with one row of values (and nothing after it)
_ONE_ROW = re.compile(r"^(?P<head>INSERT\s.+?\sVALUES\s*)(?P<row>\([^()]*\))\s*$", re.S | re.I)


def insert_many(
    conn: Connection | sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]
) -> None:
    """Run ``sql`` (an ``INSERT … VALUES (?, …)`` of one row) for every row of ``rows``,
    in as few statements as fit, in ``conn``'s open transaction."""
    if not rows:
        return
    raw = conn if isinstance(conn, sqlite3.Connection) else _driver(conn)
    width = len(rows[0])
    most = _most_rows(_variable_limit(raw), width)
    start = 0
    while start < len(rows):
        size = _chunk(len(rows) - start, most)
        chunk = rows[start : start + size]
        statement = _many(sql, size) if size > 1 else sql
        params = tuple(value for row in chunk for value in row)
        if isinstance(conn, sqlite3.Connection):
            conn.execute(statement, params)
        else:  # through SQLAlchemy, so its events see the statement
            conn.exec_driver_sql(statement, params)
        start += size


def _driver(conn: Connection) -> sqlite3.Connection:
    raw = conn.connection.driver_connection
    if not isinstance(raw, sqlite3.Connection):
        raise TypeError(f"insert_many needs a SQLite connection, not {type(raw).__name__}")
    return raw


def _chunk(left: int, most: int) -> int:
    """The largest power of two that is at most ``left`` and ``most``."""
    return 1 << (min(left, most).bit_length() - 1)


def _most_rows(limit: int, width: int) -> int:
    """The largest power of two rows of ``width`` parameters under ``limit`` (and
    :data:`MAX_CHUNK`)."""
    return _chunk(max(1, limit // max(1, width)), MAX_CHUNK)


def _variable_limit(raw: sqlite3.Connection) -> int:
    try:
        return raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    except (AttributeError, sqlite3.Error):  # pragma: no cover - Python < 3.11
        return _OLDEST_LIMIT


@functools.lru_cache(maxsize=256)
def _many(sql: str, rows: int) -> str:
    """``sql`` with its one row of values repeated ``rows`` times."""
    match = _ONE_ROW.match(sql)
    if match is None:
        raise ValueError(f"not an INSERT of one row of VALUES: {sql!r}")
    return match["head"] + ", ".join([match["row"]] * rows)
