"""Pigeon analyzes its own PostgreSQL tables once they changed enough (planner statistics).

Without it, on a server whose autovacuum is off (ours) or slow, the plans made
while the tables were empty stay: measured, every SMS then read thousands of
rows of ``notifications``, ``send_attempts`` and ``timeline`` by sequential scan.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, text
from tests.integration.postgres import fresh_schema
from tests.support import eventually

from pigeon.domain.events import utcnow
from pigeon.services.retention import PlannerStatistics
from pigeon.store.engine import DatabaseUrl
from pigeon.store.planner_statistics import BASE_THRESHOLD
from pigeon.store.schema import outbox
from pigeon.store.sql_store import SqlStore


@pytest.fixture
async def pg_store() -> AsyncIterator[tuple[SqlStore, DatabaseUrl]]:
    """A started store on a new PostgreSQL schema, and the schema's URL."""
    with fresh_schema() as url:
        database = DatabaseUrl.parse(url)
        store = SqlStore(database, outbox=True, auto_migrate=True)
        await store.start()
        try:
            yield store, database
        finally:
            await store.stop()


def _add_outbox_rows(database: DatabaseUrl, count: int) -> None:
    engine = create_engine(database.sqlalchemy_url(asynchronous=False))
    try:
        with engine.begin() as conn:
            rows = [
                {
                    "topic": "t",
                    "key": f"k{i}",
                    "value": b"v",
                    "headers": "{}",
                    "created_at": utcnow(),
                }
                for i in range(count)
            ]
            conn.execute(insert(outbox), rows)
    finally:
        engine.dispose()


def _statistics(database: DatabaseUrl, table: str) -> tuple[int, float]:
    """``(manual analyze count, the planner's row estimate)`` of ``table``."""
    engine = create_engine(database.sqlalchemy_url(asynchronous=False))
    try:
        with engine.connect() as conn:
            count, estimate = conn.execute(
                text(
                    "SELECT s.analyze_count, c.reltuples FROM pg_stat_user_tables AS s"
                    " JOIN pg_class AS c ON c.oid = s.relid"
                    " WHERE s.schemaname = current_schema() AND s.relname = :t"
                ),
                {"t": table},
            ).one()
            return int(count), float(estimate)
    finally:
        engine.dispose()


async def test_a_table_that_grew_is_analyzed_once_and_an_unchanged_one_is_not(
    pg_store: tuple[SqlStore, DatabaseUrl],
) -> None:
    store, database = pg_store
    assert store.keeps_planner_statistics
    assert "outbox" not in await store.refresh_statistics()  # empty since the migration
    _add_outbox_rows(database, 4 * BASE_THRESHOLD)
    analyzed: list[str] = []

    async def outbox_analyzed() -> bool:  # the server counts changes within a second
        analyzed.extend(await store.refresh_statistics())
        return "outbox" in analyzed

    await eventually(outbox_analyzed)
    assert analyzed.count("outbox") == 1
    assert "notifications" not in analyzed  # no row changed there
    assert _statistics(database, "outbox") == (1, 4 * BASE_THRESHOLD)
    assert "outbox" not in await store.refresh_statistics()  # fresh until it changes again


async def test_the_projector_s_periodic_pass_keeps_statistics_fresh(
    pg_store: tuple[SqlStore, DatabaseUrl],
) -> None:
    """The pass the status-projector worker runs, at a short interval."""
    store, database = pg_store
    keeper = PlannerStatistics(store, interval=0.05)
    task = asyncio.create_task(keeper.run())
    try:
        _add_outbox_rows(database, 2 * BASE_THRESHOLD)
        await eventually(lambda: _statistics(database, "outbox")[0] >= 1)
    finally:
        keeper.request_stop()
        await task
    assert keeper.passes >= 1  # the pass that analyzed has finished once run() returned
    assert _statistics(database, "outbox") == (1, 2 * BASE_THRESHOLD)


async def test_sqlite_has_nothing_to_analyze(tmp_path: Path) -> None:
    store = SqlStore(DatabaseUrl.parse(f"sqlite:///{tmp_path / 'p.db'}"), auto_migrate=True)
    await store.start()
    try:
        assert not store.keeps_planner_statistics
        assert await store.refresh_statistics() == []
    finally:
        await store.stop()
