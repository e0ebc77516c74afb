"""SQLAlchemy async engines for a Pigeon SQLite file.

Two engines on one file: writers start with ``BEGIN IMMEDIATE`` so that two
processes never deadlock upgrading a read lock (SQLite would fail one of them
at once instead of waiting out the busy timeout); readers use plain deferred
transactions and never block writers under WAL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

BUSY_TIMEOUT_MS = 2


def is_busy(exc: BaseException) -> bool:
    """True when a driver error says another connection holds the write lock."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def sqlite_engine(path: Path, *, immediate: bool, synchronous: str = "NORMAL") -> AsyncEngine:
    """An async engine on ``path`` with Pigeon's pragmas."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", pool_size=4, max_overflow=4)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        # SQLite's own busy handler backs off to 100 ms sleeps and keeps losing to
        # newcomers; the group committer retries a busy BEGIN itself, in ~1 ms steps.
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
