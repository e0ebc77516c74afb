"""Fixtures of the bus contract suite: one parametrized backend per run."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pigeon.bus.factory import bus_from_url
from pigeon.bus.port import EventBus

_names = itertools.count()

BusFactory = Callable[[], Awaitable[EventBus]]


@pytest.fixture(params=["sqlite"])
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty bus of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bus.db'}"
    raise AssertionError(request.param)


@pytest.fixture
async def make_bus(bus_url: str) -> AsyncIterator[BusFactory]:
    """Opens bus instances on the same storage (think: processes), closing them after."""
    opened: list[EventBus] = []

    async def factory() -> EventBus:
        bus = bus_from_url(bus_url, partitions=4, lease_seconds=1.0)
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


async def eventually(
    condition: Callable[[], bool], within: float = 10.0, interval: float = 0.01
) -> None:
    """Wait until ``condition()`` holds, failing the test after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
