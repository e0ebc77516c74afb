"""SQLAlchemy engines for the store: a SQLite file or a PostgreSQL database.

Every process writes through one synchronous connection driven by one thread
(:func:`writer_engine`, used by the group committer): a whole group commit is
one call into that thread. Reads go through a pooled async engine
(:func:`reader_engine`).

SQLite: writers start with ``BEGIN IMMEDIATE`` so that two processes never
deadlock upgrading a read lock (SQLite would fail one of them at once instead
of waiting out the busy timeout); readers use plain deferred transactions and
never block writers under WAL.

PostgreSQL (psycopg 3): concurrent writers are the server's business, and the
group committer only retries serialization failures and deadlocks.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from pigeon.bus.sqlite_schema import NO_AUTO_CHECKPOINT, SOFT_HEAP_LIMIT
from pigeon.errors import ConfigurationError

BUSY_TIMEOUT_MS = 2
#: SQLSTATEs after which a PostgreSQL transaction may simply be run again
_PG_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_PG_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


@dataclass(frozen=True)
class DatabaseUrl:
    """A store URL, checked: ``sqlite:///path`` or ``postgresql://…``."""

    url: str
    dialect: str  # "sqlite" | "postgresql"

    @classmethod
    def parse(cls, url: str, setting: str = "PIGEON_DATABASE_URL") -> DatabaseUrl:
        """Check ``url``; a URL we cannot serve is a :class:`ConfigurationError`."""
        if url.startswith("sqlite:///"):
            if not Path(url.removeprefix("sqlite:///")).name:
                raise ConfigurationError(setting, f"{url!r} names no file")
            return cls(url, "sqlite")
        if url.startswith(_PG_SCHEMES):
            parts = urlsplit(url)
            if not parts.hostname and "host=" not in (parts.query or ""):
                raise ConfigurationError(
                    setting, f"{_redact(url)!r} names no host (postgresql://user@host:5432/db)"
                )
            try:
                parts.port  # noqa: B018 - raises on a bad port
            except ValueError:
                raise ConfigurationError(
                    setting, f"{_redact(url)!r} has a bad port number"
                ) from None
            if not parts.path.strip("/"):
                raise ConfigurationError(
                    setting, f"{_redact(url)!r} names no database (postgresql://host:5432/db)"
                )
            return cls(url, "postgresql")
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise ConfigurationError(
            setting,
            f"unsupported database URL scheme {scheme!r}; "
            "use sqlite:///path/to/pigeon.db or postgresql://user@host:5432/dbname",
        )

    @property
    def path(self) -> Path:
        """The SQLite file (SQLite URLs only)."""
        return Path(self.url.removeprefix("sqlite:///"))

    def sqlalchemy_url(self, *, asynchronous: bool) -> str:
        """The URL with the driver Pigeon uses for it."""
        if self.dialect == "sqlite":
            return f"sqlite+aiosqlite:///{self.path}" if asynchronous else f"sqlite:///{self.path}"
        rest = self.url.split("://", 1)[1]
        return f"postgresql+psycopg://{rest}"

    def psycopg_conninfo(self) -> str:
        """The URL as psycopg connects to it directly (PostgreSQL URLs only)."""
        if self.dialect != "postgresql":
            raise ValueError(f"{self} is not a PostgreSQL URL")
        return "postgresql://" + self.url.split("://", 1)[1]

    def __str__(self) -> str:
        return _redact(self.url)


def _redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def is_busy(exc: BaseException) -> bool:
    """True when a driver error says running the transaction again may succeed."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return True
    return getattr(orig, "sqlstate", None) in _PG_RETRYABLE


def _sqlite_pragmas(engine: Engine, *, immediate: bool, synchronous: str) -> None:
    """Pigeon's pragmas on every connection of ``engine``, and its own ``BEGIN``."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # checkpoints run in the background (pigeon.bus.sqlite_checkpoint), never in a commit
        cursor.execute(NO_AUTO_CHECKPOINT)
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        # SQLite's own busy handler backs off to 100 ms sleeps and keeps losing to
        # newcomers; the group committer retries a busy BEGIN itself, in ~1 ms steps.
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute(SOFT_HEAP_LIMIT)  # the process's, whichever connection sets it
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer_engine(url: DatabaseUrl, *, synchronous: str = "NORMAL", writers: int = 1) -> Engine:
    """The synchronous engine of a process's writer threads (see the group committer):
    one on SQLite, ``writers`` on PostgreSQL.

    A whole group commit runs as one function in that thread: the write lock
    (SQLite) or the transaction (PostgreSQL) is never held across event-loop
    turns, and no statement pays a thread hop of its own.
    """
    if url.dialect == "sqlite":
        engine = create_engine(
            url.sqlalchemy_url(asynchronous=False),
            pool_size=1,
            max_overflow=0,
            connect_args={"check_same_thread": False},
        )
        _sqlite_pragmas(engine, immediate=True, synchronous=synchronous)
        return engine
    return create_engine(
        url.sqlalchemy_url(asynchronous=False),
        pool_size=writers,
        max_overflow=1,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


def postgres_engine(url: DatabaseUrl, *, pool_size: int = 10) -> AsyncEngine:
    """A pooled async psycopg engine; connections are opened lazily."""
    return create_async_engine(
        url.sqlalchemy_url(asynchronous=True),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        # a connection that died with the server is dropped, not handed out again
        pool_pre_ping=False,
        connect_args={"connect_timeout": 5},
    )


def reader_engine(url: DatabaseUrl, *, synchronous: str = "NORMAL") -> AsyncEngine:
    """The async engine reads go through (they never block the writer under WAL)."""
    if url.dialect == "sqlite":
        engine = create_async_engine(
            url.sqlalchemy_url(asynchronous=True), pool_size=4, max_overflow=4
        )
        _sqlite_pragmas(engine.sync_engine, immediate=False, synchronous=synchronous)
        return engine
    return postgres_engine(url)
