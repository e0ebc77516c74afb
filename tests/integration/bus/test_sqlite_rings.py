"""Rings on the embedded bus name the topics a commit wrote to.

Every process that commits rings the others (see :mod:`pigeon.bus.doorbell`).
A ring that woke every consumer of every process made each of them poll the
log (a thread hop and a query) for every commit anywhere: most of a worker's
CPU at a low rate. A ring names its topics, and only their consumers look.
Real SQLite files and real datagram sockets; the other "process" is a second
bus instance on the same file, which hears only rings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from pigeon.bootstrap import Pigeon
from pigeon.bus.doorbell import Doorbell, Topics
from pigeon.bus.sqlite import SqliteEventBus
from pigeon.domain.events import TOPIC_SMS_REQUESTED, TOPIC_STATUS
from pigeon.domain.notification import Notification
from tests.support import embedded_pigeon

from .conftest import eventually
from .test_bus_contract import collecting


@pytest.fixture
async def pigeon(tmp_path: Path) -> AsyncIterator[Pigeon]:
    """The embedded stack wired as ``pigeon run`` wires it, started."""
    async with embedded_pigeon(tmp_path) as app:
        yield app


async def test_a_store_commit_rings_the_consumers_of_its_topic_and_no_others(
    pigeon: Pigeon,
) -> None:
    other = SqliteEventBus(pigeon.settings.bus_path)  # another process: it hears rings only
    await other.start()
    try:
        async with (
            collecting(other, TOPIC_SMS_REQUESTED, "rings-requested") as requested,
            collecting(other, TOPIC_STATUS, "rings-status") as status,
        ):
            await asyncio.sleep(0.3)  # part of the scenario: both have gone idle
            before_requested = replace(requested.runner.consumer.wakes)
            before_status = replace(status.runner.consumer.wakes)
            sent = [
                Notification.new_sms(account_id="acc_1", to="+14155550123", body=f"n{i}")
                for i in range(5)
            ]
            for i, notification in enumerate(sent):
                await pigeon.store.append_events([notification.requested_event()])
                await eventually(lambda n=i: len(requested.seen) > n, interval=0.001)
            requested_wakes = requested.runner.consumer.wakes
            status_wakes = status.runner.consumer.wakes
            # each commit woke the consumer of its topic at once (no fallback timer) ...
            assert requested_wakes.rung - before_requested.rung >= len(sent)
            assert requested_wakes.fallback == before_requested.fallback
            # ... and not the consumer of a topic nobody wrote to
            assert status_wakes.rung == before_status.rung
            assert status.seen == []
    finally:
        await other.stop()


async def _doorbells(tmp_path: Path) -> tuple[Doorbell, Doorbell, list[Topics]]:
    heard: list[Topics] = []
    folder = tmp_path / "wake"
    ringer = Doorbell(folder, lambda topics: None)
    listener = Doorbell(folder, heard.append)
    await ringer.start()
    await listener.start()
    return ringer, listener, heard


async def test_a_ring_carries_its_topics_and_an_unknown_commit_rings_every_consumer(
    tmp_path: Path,
) -> None:
    ringer, listener, heard = await _doorbells(tmp_path)
    try:
        ringer.ring(frozenset({"b.topic", "a.topic"}))
        ringer.ring(frozenset({"c.topic"}))  # the same event-loop turn: one ring
        await eventually(lambda: len(heard) >= 1, interval=0.001)
        assert heard == [frozenset({"a.topic", "b.topic", "c.topic"})]
        ringer.ring(frozenset({"a.topic"}))
        ringer.ring(None)  # something else was written too: every consumer looks
        await eventually(lambda: len(heard) >= 2, interval=0.001)
        assert heard[1] is None
        ringer.ring(frozenset())  # a commit that wrote nothing to the log rings nobody
        ringer.ring(frozenset({"d.topic"}))
        await eventually(lambda: len(heard) >= 3, interval=0.001)
        assert heard[2] == frozenset({"d.topic"})
        ringer.ring(frozenset({"x" * 300, "y" * 300}))  # too long for one ring: all
        await eventually(lambda: len(heard) >= 4, interval=0.001)
        assert heard[3] is None
    finally:
        await ringer.stop()
        await listener.stop()
