"""Fixtures of the bus contract suite: one parametrized backend per run."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pigeon.bus.factory import bus_from_url
from pigeon.bus.kafka_doorbell import PostgresDoorbell
from pigeon.bus.port import EventBus
from tests.integration.kafka_broker import TEST_KAFKA_OPTIONS, KafkaBroker, kafka_broker
from tests.integration.postgres import POSTGRES_URL, postgres_or_skip
from tests.support import eventually

__all__ = ["BusFactory", "eventually", "kafka_broker"]

_names = itertools.count()

BusFactory = Callable[[], Awaitable[EventBus]]


@pytest.fixture(params=["sqlite", "kafka", "kafka-doorbell"])
def bus_backend(request: pytest.FixtureRequest) -> str:
    """Each backend; ``kafka-doorbell``: Kafka consumers that doze and are woken through
    PostgreSQL (as with a PostgreSQL store), ``kafka``: long-polling ones."""
    if request.param == "kafka-doorbell":
        postgres_or_skip()
    return str(request.param)


@pytest.fixture
def bus_url(bus_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh bus of each backend (Kafka: one broker, unique topic names)."""
    if bus_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'bus.db'}"
    broker: KafkaBroker = request.getfixturevalue("kafka_broker")
    return broker.url


@pytest.fixture
async def make_bus(bus_url: str, bus_backend: str) -> AsyncIterator[BusFactory]:
    """Opens bus instances on the same storage (think: processes), closing them after."""
    opened: list[EventBus] = []

    async def factory() -> EventBus:
        # each instance stands for a process: a doorbell of its own
        doorbell = PostgresDoorbell(POSTGRES_URL) if bus_backend == "kafka-doorbell" else None
        bus = bus_from_url(
            bus_url, partitions=4, lease_seconds=1.0, doorbell=doorbell, **TEST_KAFKA_OPTIONS
        )
        await bus.start()
        opened.append(bus)
        return bus

    yield factory
    for bus in opened:
        await bus.stop()


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"test.topic.{next(_names)}"
