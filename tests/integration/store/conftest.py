"""Fixtures of the store suites: every test runs on both dialects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.integration.postgres import fresh_schema

from pigeon.store.engine import DatabaseUrl
from pigeon.store.sql_store import SqlStore


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseUrl]:
    """An empty database of each dialect: a new SQLite file or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield DatabaseUrl.parse(f"sqlite:///{tmp_path / 'pigeon.db'}")
        return
    with fresh_schema() as url:
        yield DatabaseUrl.parse(url)


@pytest.fixture
async def store(database: DatabaseUrl) -> AsyncIterator[SqlStore]:
    """A started store as a Kafka-stack process has it (events go to the outbox)."""
    store = SqlStore(database, outbox=True, auto_migrate=True)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()
