"""A real Pigeon on each stack, its real API driven over in-process HTTP.

Every test here runs twice: on the embedded stack (one SQLite file in
``tmp_path``: store and bus log) and on Kafka + PostgreSQL (a fresh schema per
test, one Tansu broker for the session, events written to the outbox table).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from api_testkit import AUTH_TOKEN, PUBLIC_URL, SMALL_LIMIT, StoredEvent, Tenant
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, text
from tests.integration.kafka_broker import KafkaBroker, kafka_broker, kafka_stack_settings
from tests.integration.postgres import fresh_schema

from pigeon.api.app import ApiConfig, create_app
from pigeon.bootstrap import Pigeon, build
from pigeon.config import Settings
from pigeon.store.intake import move_all

__all__ = ["kafka_broker"]

STACKS = ("sqlite", "kafka+postgres")
#: tables whose row counts tell whether a request stored anything ("events": the
#: stack's event log table, see ``event_table``)
COUNTED = ("notifications", "timeline", "events", "pending_callbacks", "usage_daily")


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    """Which stack Pigeon runs on: 'sqlite' or 'kafka+postgres'."""
    return str(request.param)


@pytest.fixture
def settings(stack: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings for the stack, with a known Twilio auth token."""
    common = Settings(
        data_dir=tmp_path,
        twilio_auth_token=AUTH_TOKEN,
        public_url=PUBLIC_URL,
        bus_partitions=2,
        auto_migrate=True,
    )
    if stack == "sqlite":
        yield common
        return
    broker: KafkaBroker = request.getfixturevalue("kafka_broker")
    with fresh_schema() as database_url:
        yield common.model_copy(update=kafka_stack_settings(broker, database_url))


@pytest.fixture
def event_table(settings: Settings) -> str:
    """Where the store writes events: the SQLite bus log, or the outbox with Kafka."""
    return "outbox" if settings.uses_kafka else "bus_log"


@pytest.fixture
def database(settings: Settings) -> Iterator[Engine]:
    """A plain synchronous connection pool on the store's database (not Pigeon's)."""
    engine = create_engine(settings.database.sqlalchemy_url(asynchronous=False))
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
async def pigeon(settings: Settings) -> AsyncIterator[Pigeon]:
    """Pigeon built from settings and started: bus, topics and store."""
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
def moved(pigeon: Pigeon, database: Engine) -> Callable[[], None]:
    """Move what the API accepted from its intake file into the store (SQLite), as the
    workers' intake relay would; a no-op on Kafka + PostgreSQL."""

    def move() -> None:
        if pigeon.store.intake_path is None:
            return
        with database.begin() as conn:
            move_all(conn, pigeon.store.intake_path, pigeon.store.apply_callbacks)

    return move


@pytest.fixture
def row_counts(
    database: Engine, event_table: str, moved: Callable[[], None]
) -> Callable[[], dict[str, int]]:
    """Row counts of the tables a request can write to, read outside Pigeon."""

    def count() -> dict[str, int]:
        moved()
        with database.connect() as conn:
            return {
                name: conn.execute(
                    text(f"SELECT COUNT(*) FROM {event_table if name == 'events' else name}")
                ).scalar_one()
                for name in COUNTED
            }

    return count


@pytest.fixture
def query(database: Engine, moved: Callable[[], None]) -> Callable[..., list[tuple[object, ...]]]:
    """Run a read-only SQL query (``:name`` parameters) on the store's database."""

    def run(sql: str, **params: object) -> list[tuple[object, ...]]:
        moved()
        with database.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]

    return run


@pytest.fixture
def events(
    database: Engine, event_table: str, moved: Callable[[], None]
) -> Callable[[str], list[StoredEvent]]:
    """The events the store committed to ``topic``, oldest first (not yet relayed ones)."""

    def read(topic: str) -> list[StoredEvent]:
        moved()
        with database.connect() as conn:
            rows = conn.execute(
                text(f"SELECT topic, key, value FROM {event_table} WHERE topic = :t ORDER BY id"),
                {"t": topic},
            ).all()
        return [StoredEvent(r.topic, r.key, bytes(r.value)) for r in rows]

    return read
