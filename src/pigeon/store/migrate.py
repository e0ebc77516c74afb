"""Schema migrations (Alembic) for both store dialects, run from Pigeon itself.

``pigeon db upgrade`` brings a database to the newest revision; the API and
the workers refuse to start on a database that is behind, with one line that
says what to run, rather than failing later on a missing column.

Several processes may start at once on a fresh database (``pigeon run`` beside
its workers, or replicas in production): an upgrade runs under a lock - a
file lock beside a SQLite file, an advisory lock on PostgreSQL - so only one
of them migrates and the others find the work done.

Alembic (with Mako and Pygments, ~11 MB) is imported only when there is
something to migrate: a process that finds its database current - every
start but the first after an upgrade - reads the revision with one query and
never loads it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from pigeon.errors import SchemaNotMigrated, StoreUnavailable
from pigeon.store.engine import DatabaseUrl

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
#: an arbitrary constant: the advisory lock that serializes upgrades on PostgreSQL
_PG_LOCK_ID = 0x5049_4745  # "PIGE"


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


_REVISION = re.compile(r"^(down_)?revision(?:\s*:[^=]*)?\s*=\s*(?:None|[\"']([^\"']+)[\"'])", re.M)


@functools.cache
def _revisions() -> tuple[frozenset[str], str]:
    """Every revision the scripts define, and the head: the one no other revises (read
    from the scripts' ``revision``/``down_revision`` lines, without Alembic)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for down, value in _REVISION.findall(script.read_text()):
            if value:
                (revised if down else revisions).add(value)
    heads = revisions - revised
    assert len(heads) == 1, f"migrations must form one line, found heads {sorted(heads)}"
    return frozenset(revisions), heads.pop()


def head_revision() -> str:
    """The newest revision this version of Pigeon knows."""
    return _revisions()[1]


def _unknown(url: DatabaseUrl, current: str) -> SchemaNotMigrated:
    return SchemaNotMigrated(
        f"database {url} is at revision {current}, which this Pigeon does not know "
        f"(newest here: {head_revision()}); is a newer Pigeon using it?"
    )


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
        return _revision_of(conn)


def _revision_of(conn: Connection) -> str | None:
    """What Alembic's ``alembic_version`` table holds (one query; no Alembic import)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


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
    current = current_revision(url)
    if current is not None and current not in _revisions()[0]:
        raise _unknown(url, current)  # a newer Pigeon's: never "upgrade" it from here
    if revision == "head" and current == head_revision():
        return current, current  # nothing to do: Alembic stays unloaded
    from alembic import command

    with _connect(url) as conn, _upgrade_lock(url, conn):
        before = _revision_of(conn)
        command.upgrade(_config(conn), revision)
        conn.commit()
        after = _revision_of(conn)
    return before, after or ""


def refuse_unknown(url: DatabaseUrl) -> None:
    """Raise :class:`SchemaNotMigrated` if ``url`` is at a revision this Pigeon does not
    know (a newer Pigeon's): checked before anything is written to it."""
    current = current_revision(url)
    if current is not None and current not in _revisions()[0]:
        raise _unknown(url, current)


def check_current(url: DatabaseUrl) -> None:
    """Raise :class:`SchemaNotMigrated` unless ``url`` is at this Pigeon's newest revision."""
    current = current_revision(url)
    head = head_revision()
    if current == head:
        return
    if current is None:
        state = "has no Pigeon schema yet"
    else:
        if current not in _revisions()[0]:
            raise _unknown(url, current)
        state = f"is at revision {current}"
    raise SchemaNotMigrated(
        f"database {url} {state}; this Pigeon needs revision {head}. "
        "Run 'pigeon db upgrade' (or start with --migrate)."
    )
