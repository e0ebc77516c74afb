"""Fixtures of the bus contract suite: one parametrized backend per run."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pigeon.bus.factory import bus_from_url
from pigeon.bus.port import EventBus
from tests.integration.kafka_broker import TEST_KAFKA_OPTIONS, KafkaBroker, kafka_broker
from tests.support import eventually

__all__ = ["BusFactory", "eventually", "kafka_broker"]

_names = itertools.count()

BusFactory = Callable[[], Awaitable[EventBus]]


@pytest.fixture(params=["sqlite", "kafka"])
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh bus of each backend (Kafka: one broker, unique topic names)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bus.db'}"
    if request.param == "kafka":
        broker: KafkaBroker = request.getfixturevalue("kafka_broker")
        return broker.url
    raise AssertionError(request.param)


@pytest.fixture
async def make_bus(bus_url: str) -> AsyncIterator[BusFactory]:
    """Opens bus instances on the same storage (think: processes), closing them after."""
    opened: list[EventBus] = []

    async def factory() -> EventBus:
        bus = bus_from_url(bus_url, partitions=4, lease_seconds=1.0, **TEST_KAFKA_OPTIONS)
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
