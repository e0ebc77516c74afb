"""A real Pigeon on a SQLite file in tmp_path, its real API driven over in-process HTTP."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from api_testkit import AUTH_TOKEN, PUBLIC_URL, SMALL_LIMIT, Tenant
from fastapi import FastAPI

from pigeon.api.app import ApiConfig, create_app
from pigeon.bootstrap import Pigeon, build
from pigeon.config import Settings

#: tables whose row counts tell whether a request stored anything
COUNTED = ("notifications", "timeline", "bus_log", "pending_callbacks", "usage_daily")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with the data in ``tmp_path`` and a known Twilio auth token."""
    return Settings(
        data_dir=tmp_path,
        twilio_auth_token=AUTH_TOKEN,
        public_url=PUBLIC_URL,
        bus_partitions=2,
        auto_migrate=True,
    )


@pytest.fixture
async def pigeon(settings: Settings) -> AsyncIterator[Pigeon]:
    """Pigeon built from settings and started: bus, topics and store on one SQLite file."""
    app = build(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def tenant(pigeon: Pigeon) -> Tenant:
    """The account 'acme' with a fresh API key."""
    account, key = await pigeon.store.create_api_key("acme")
    return Tenant(account, key)


@pytest.fixture
async def other_tenant(pigeon: Pigeon) -> Tenant:
    """A second account, 'globex', with its own key."""
    account, key = await pigeon.store.create_api_key("globex")
    return Tenant(account, key)


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(pigeon: Pigeon) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the real API built by ``Pigeon.api()``."""
    async with _client(pigeon.api()) as http:
        yield http


@pytest.fixture
async def small_client(pigeon: Pigeon) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for an API on the same store whose request limit is SMALL_LIMIT bytes."""
    config = ApiConfig(
        status_callback_url=pigeon.status_callback_url,
        twilio_auth_token=AUTH_TOKEN,
        max_request_bytes=SMALL_LIMIT,
    )
    async with _client(create_app(pigeon.store, config)) as http:
        yield http


@pytest.fixture
def row_counts(settings: Settings) -> Callable[[], dict[str, int]]:
    """Row counts of the tables a request can write to, read straight from the file."""

    def count() -> dict[str, int]:
        with closing(sqlite3.connect(settings.database_path)) as conn:
            return {
                table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in COUNTED
            }

    return count


@pytest.fixture
def query(settings: Settings) -> Callable[..., list[tuple[object, ...]]]:
    """Run a read-only SQL query on the database file."""

    def run(sql: str, *params: object) -> list[tuple[object, ...]]:
        with closing(sqlite3.connect(settings.database_path)) as conn:
            return conn.execute(sql, params).fetchall()

    return run
