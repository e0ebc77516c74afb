"""SQLite's memory per process is held near a limit, whichever connection opens first.

The limit (``PRAGMA soft_heap_limit``) is the whole process's: each test clears it,
opens one kind of Pigeon connection to a real file, and reads it back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from pigeon.bus.sqlite_schema import SOFT_HEAP_LIMIT_BYTES, configure
from pigeon.bus.sqlite_thread import SqliteThread
from pigeon.store.engine import DatabaseUrl, reader_engine, writer_engine


def process_limit() -> int:
    with sqlite3.connect(":memory:") as conn:
        return int(conn.execute("PRAGMA soft_heap_limit").fetchone()[0])


@pytest.fixture(autouse=True)
def no_limit() -> Iterator[None]:
    """No limit before the test (another test's connection may have set it)."""
    with sqlite3.connect(":memory:") as conn:
        conn.execute("PRAGMA soft_heap_limit=0")
    assert process_limit() == 0
    yield


def test_a_bus_connection_sets_the_limit(tmp_path: Path) -> None:
    """The event log's connections (configure) set it."""
    conn = sqlite3.connect(tmp_path / "bus.db", isolation_level=None)
    try:
        configure(conn)
    finally:
        conn.close()
    assert process_limit() == SOFT_HEAP_LIMIT_BYTES


async def test_the_bus_thread_sets_the_limit(tmp_path: Path) -> None:
    """A consumer's own connection, opened in its thread, sets it."""
    db = SqliteThread(tmp_path / "bus.db")
    await db.open()
    try:
        assert process_limit() == SOFT_HEAP_LIMIT_BYTES
    finally:
        await db.close()


def test_the_store_writer_sets_the_limit(tmp_path: Path) -> None:
    """The store's writer engine sets it on connect."""
    engine = writer_engine(DatabaseUrl.parse(f"sqlite:///{tmp_path / 'store.db'}"))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert process_limit() == SOFT_HEAP_LIMIT_BYTES
    finally:
        engine.dispose()


async def test_the_store_reader_sets_the_limit(tmp_path: Path) -> None:
    """The store's async reader engine sets it on connect."""
    engine = reader_engine(DatabaseUrl.parse(f"sqlite:///{tmp_path / 'store.db'}"))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        assert process_limit() == SOFT_HEAP_LIMIT_BYTES
    finally:
        await engine.dispose()
