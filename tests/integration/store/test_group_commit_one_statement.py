"""PostgreSQL: a group of one-statement work runs without BEGIN and COMMIT.

Against real databases (a SQLite file, a PostgreSQL schema), through the group
committer's writer thread: on PostgreSQL a group whose every unit calls the same
one-statement function runs it outside a transaction block (one round trip
instead of three); anything else, and everything on SQLite, runs in the group's
transaction. An item that fails still fails alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pigeon.errors import StoreUnavailable
from pigeon.store.engine import DatabaseUrl, writer_engine
from pigeon.store.group_commit import GroupCommitter


@pytest.fixture
async def committer(database: DatabaseUrl) -> AsyncIterator[GroupCommitter]:
    engine = writer_engine(database)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, note TEXT NOT NULL)"))
    commits = GroupCommitter(engine, name="probe")
    await commits.start()
    try:
        yield commits
    finally:
        await commits.stop()


def in_transaction(conn: Connection) -> bool:
    """Whether the driver connection has a transaction block open (asked after a
    statement: psycopg sends its BEGIN with the first one)."""
    raw = conn.connection.driver_connection
    if isinstance(raw, sqlite3.Connection):
        return raw.in_transaction
    assert isinstance(raw, psycopg.Connection)
    return raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


class Probe:
    """One-statement work that records whether it ran inside a transaction block."""

    def __init__(self) -> None:
        self.in_transaction: list[bool] = []

    def insert(self, conn: Connection, ids: list[int]) -> list[int]:
        values = ", ".join(f"({i}, 'n{i}')" for i in ids)
        try:
            conn.exec_driver_sql(f"INSERT INTO probe (id, note) VALUES {values}")
        finally:
            self.in_transaction.append(in_transaction(conn))
        return ids


async def hold_writer(commits: GroupCommitter) -> tuple[threading.Event, asyncio.Future[None]]:
    """Keep the writer thread busy until the returned event is set, so that what is
    submitted meanwhile lands in one group (and the holding work's own future)."""
    release, holding = threading.Event(), threading.Event()

    def block(_conn: Connection) -> None:
        holding.set()
        release.wait(10)

    held = asyncio.ensure_future(commits.submit(block))
    assert await asyncio.to_thread(holding.wait, 10)
    return release, held


async def stored(commits: GroupCommitter) -> list[int]:
    def read(conn: Connection) -> list[int]:
        return [row[0] for row in conn.execute(text("SELECT id FROM probe ORDER BY id"))]

    return await commits.submit(read)


async def test_a_group_of_one_statement_work_runs_outside_a_transaction_block(
    committer: GroupCommitter, database: DatabaseUrl
) -> None:
    probe = Probe()
    release, held = await hold_writer(committer)
    sends = [
        asyncio.ensure_future(committer.merged(probe.insert, i, one_statement=True))
        for i in range(1, 21)
    ]
    await asyncio.sleep(0.05)
    release.set()
    await held
    assert await asyncio.gather(*sends) == list(range(1, 21))
    # the whole group: one statement, and on PostgreSQL no BEGIN
    assert probe.in_transaction == [database.dialect == "sqlite"]
    assert await stored(committer) == list(range(1, 21))


async def test_one_statement_work_beside_other_work_runs_in_the_groups_transaction(
    committer: GroupCommitter,
) -> None:
    probe = Probe()
    release, held = await hold_writer(committer)
    first = asyncio.ensure_future(committer.merged(probe.insert, 1, one_statement=True))
    other = asyncio.ensure_future(
        committer.submit(lambda conn: conn.exec_driver_sql("INSERT INTO probe VALUES (2, 'x')"))
    )
    await asyncio.sleep(0.05)
    release.set()
    await held
    await asyncio.gather(first, other)
    assert probe.in_transaction == [True]
    assert await stored(committer) == [1, 2]


async def test_the_same_function_without_the_promise_keeps_the_transaction(
    committer: GroupCommitter,
) -> None:
    probe = Probe()
    release, held = await hold_writer(committer)
    sends = [
        asyncio.ensure_future(committer.merged(probe.insert, 1, one_statement=True)),
        asyncio.ensure_future(committer.merged(probe.insert, 2)),
    ]
    await asyncio.sleep(0.05)
    release.set()
    await held
    assert await asyncio.gather(*sends) == [1, 2]
    assert probe.in_transaction == [True]
    assert await stored(committer) == [1, 2]


async def test_an_item_that_fails_fails_alone(
    committer: GroupCommitter, database: DatabaseUrl
) -> None:
    probe = Probe()
    await committer.merged(probe.insert, 5, one_statement=True)
    release, held = await hold_writer(committer)
    sends = [
        asyncio.ensure_future(committer.merged(probe.insert, i, one_statement=True))
        for i in (4, 5, 6)  # 5 is there already
    ]
    await asyncio.sleep(0.05)
    release.set()
    await held
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert results[0] == 4 and results[2] == 6
    assert isinstance(results[1], StoreUnavailable)
    assert await stored(committer) == [4, 5, 6]
    # the group's statement failed whole, then each item ran alone (PostgreSQL: still
    # without BEGIN)
    assert probe.in_transaction == [database.dialect == "sqlite"] * 5


async def test_a_connection_the_server_drops_answers_store_unavailable_and_is_not_reused(
    committer: GroupCommitter, database: DatabaseUrl
) -> None:
    """The statement goes through the driver itself (as the accept statement does): the
    driver's own error still becomes StoreUnavailable (the API's 503), not a bare psycopg
    error (a 500), and the next group gets a live connection."""
    if database.dialect != "postgresql":
        pytest.skip("the server dropping a connection: PostgreSQL")

    def dropped(conn: Connection, items: list[int]) -> list[int]:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        raw.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return items

    with pytest.raises(StoreUnavailable, match="database write failed"):
        await committer.merged(dropped, 1, one_statement=True)
    assert await committer.merged(Probe().insert, 7, one_statement=True) == 7
    assert await stored(committer) == [7]
