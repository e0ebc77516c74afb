"""Schema migrations (Alembic) for both store dialects, run from Pigeon itself.

``pigeon db upgrade`` brings a database to the newest revision; the API and
the workers refuse to start on a database that is behind, with one line that
says what to run, rather than failing later on a missing column.

Several processes may start at once on a fresh database (``pigeon run`` beside
its workers, or replicas in production): an upgrade runs under a lock - a
file lock beside a SQLite file, an advisory lock on PostgreSQL - so only one
of them migrates and the others find the work done.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from pigeon.errors import SchemaNotMigrated, StoreUnavailable
from pigeon.store.engine import DatabaseUrl

MIGRATIONS = Path(__file__).parent / "migrations"
#: an arbitrary constant: the advisory lock that serializes upgrades on PostgreSQL
_PG_LOCK_ID = 0x5049_4745  # "PIGE"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of Pigeon knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


@contextlib.contextmanager
def _connect(url: DatabaseUrl) -> Iterator[Connection]:
    if url.dialect == "sqlite":
        url.path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url.sqlalchemy_url(asynchronous=False), poolclass=None)
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"database {url} does not answer: {_reason(exc)}") from exc
    finally:
        engine.dispose()


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).strip().splitlines()[0]


def current_revision(url: DatabaseUrl) -> str | None:
    """The revision ``url`` is at; None for a database never migrated."""
    with _connect(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _upgrade_lock(url: DatabaseUrl, conn: Connection) -> Iterator[None]:
    if url.dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
            conn.commit()
        return
    lock_path = url.path.with_name(url.path.name + ".migrate.lock")
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released by the OS if we are killed
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def upgrade(url: DatabaseUrl, revision: str = "head") -> tuple[str | None, str]:
    """Bring ``url`` to ``revision``; returns ``(before, after)`` revisions."""
    with _connect(url) as conn, _upgrade_lock(url, conn):
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_config(conn), revision)
        conn.commit()
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after or ""


def check_current(url: DatabaseUrl) -> None:
    """Raise :class:`SchemaNotMigrated` unless ``url`` is at this Pigeon's newest revision."""
    current = current_revision(url)
    head = head_revision()
    if current == head:
        return
    if current is None:
        state = "has no Pigeon schema yet"
    else:
        try:
            ScriptDirectory.from_config(_config()).get_revision(current)
        except Exception:
            raise SchemaNotMigrated(
                f"database {url} is at revision {current}, which this Pigeon does not know "
                f"(newest here: {head}); is a newer Pigeon using it?"
            ) from None
        state = f"is at revision {current}"
    raise SchemaNotMigrated(
        f"database {url} {state}; this Pigeon needs revision {head}. "
        "Run 'pigeon db upgrade' (or start with --migrate)."
    )
