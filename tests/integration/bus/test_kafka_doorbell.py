"""Kafka consumers that doze when idle and are woken through PostgreSQL (the doorbell).

Tansu, like some other Kafka-protocol brokers, holds a fetch for its whole
wait even when a message arrives, so a long poll is slow to pick up and a
short one costs CPU forever. With a doorbell an idle member pauses its
partitions (no fetch at all) until a publisher rings; these tests run two bus
instances as two processes would, on the real broker and the real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import astuple, replace

import psycopg
import pytest

from pigeon.bus.factory import bus_from_url
from pigeon.bus.kafka import KafkaConsumer, KafkaEventBus
from pigeon.bus.kafka_consumer import (
    AWAKE_TICK_SECONDS,
    DOZE_FALLBACK_SECONDS,
    DOZING_TICK_SECONDS,
)
from pigeon.bus.kafka_doorbell import PostgresDoorbell
from pigeon.bus.port import ACK, Message, Outcome
from pigeon.bus.runner import ConsumerRunner
from pigeon.bus.wakes import Wakes
from tests.integration.kafka_broker import TEST_KAFKA_OPTIONS, KafkaBroker
from tests.integration.postgres import POSTGRES_URL, postgres_or_skip

from .conftest import eventually
from .test_bus_contract import Collector, collecting


async def _bus(broker: KafkaBroker, doorbell: bool) -> KafkaEventBus:
    bus = bus_from_url(
        broker.url,
        partitions=4,
        doorbell=PostgresDoorbell(POSTGRES_URL) if doorbell else None,
        **TEST_KAFKA_OPTIONS,
    )
    assert isinstance(bus, KafkaEventBus)
    await bus.start()
    return bus


@pytest.fixture
async def buses(kafka_broker: KafkaBroker) -> AsyncIterator[tuple[KafkaEventBus, KafkaEventBus]]:
    """A consuming and a publishing bus, each with a doorbell of its own (two processes)."""
    postgres_or_skip()
    consuming, publishing = await _bus(kafka_broker, True), await _bus(kafka_broker, True)
    yield consuming, publishing
    await publishing.stop()
    await consuming.stop()


def _member(collector: Collector) -> KafkaConsumer:
    consumer = collector.runner.consumer
    assert isinstance(consumer, KafkaConsumer)
    return consumer


def _since(before: Wakes, member: KafkaConsumer) -> Wakes:
    """What ended the member's dozes since ``before`` (a snapshot of its counts)."""
    return Wakes(*(a - b for a, b in zip(astuple(member.wakes), astuple(before), strict=True)))


async def _wakes_until_handled(bus: KafkaEventBus, topic: str, c: Collector, n: int) -> Wakes:
    """Publish message ``n`` and wait until it is handled: what ended a doze meanwhile."""
    member = _member(c)
    before = replace(member.wakes)
    await bus.publish(topic, f"k{n}", str(n).encode())
    await eventually(lambda: len(c.seen) > n, within=2 * DOZE_FALLBACK_SECONDS + 10)
    return _since(before, member)


async def test_an_idle_member_dozes_and_a_publish_elsewhere_wakes_it_at_once(
    buses: tuple[KafkaEventBus, KafkaEventBus], topic: str
) -> None:
    """Each message published by another process is picked up by a ring, not the timer."""
    consuming, publishing = buses
    await publishing.ensure_topic(topic)
    async with collecting(consuming, topic, "dozers") as c:
        member = _member(c)
        for n in range(5):
            await eventually(lambda: member.dozing)
            assert member.paused_all()  # dozing: not one partition is fetched
            woke = await _wakes_until_handled(publishing, topic, c, n)
            assert woke.rung >= 1 and woke.fallback == 0  # the ring woke it
    assert c.values() == [str(n) for n in range(5)]


async def test_without_a_ring_a_dozing_member_still_finds_messages_on_its_fallback(
    buses: tuple[KafkaEventBus, KafkaEventBus], kafka_broker: KafkaBroker, topic: str
) -> None:
    """A message published without a ring is found by the first look of the fallback timer."""
    consuming, _ = buses
    silent = await _bus(kafka_broker, doorbell=False)  # say, a publisher of another setup
    try:
        await silent.ensure_topic(topic)
        async with collecting(consuming, topic, "fallback") as c:
            member = _member(c)
            # the listener's first connect rings every subscriber once (anything published
            # while nobody listened); a member that dozes before that ring ends its doze
            # was seen waking "rung" here now and then: wait for the doze after it
            await eventually(lambda: member.dozing and member.wakes.rung >= 1)
            woke = await _wakes_until_handled(silent, topic, c, 0)
        assert (woke.rung, woke.fallback) == (0, 1)
    finally:
        await silent.stop()


async def test_members_fetch_while_the_doorbell_is_unheard_and_doze_again_when_it_is_back(
    buses: tuple[KafkaEventBus, KafkaEventBus], topic: str
) -> None:
    """Without the doorbell a member fetches (no timer needed); back, a ring wakes it again."""
    consuming, publishing = buses
    await publishing.ensure_topic(topic)
    doorbell = consuming.doorbell
    assert isinstance(doorbell, PostgresDoorbell)
    async with collecting(consuming, topic, "outage") as c:
        member = _member(c)
        await eventually(lambda: member.dozing)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (doorbell.listener_pid(),))
        await eventually(lambda: not doorbell.listening)
        await eventually(lambda: not member.dozing)  # fetching without it
        assert (await _wakes_until_handled(publishing, topic, c, 0)).fallback == 0
        await eventually(lambda: doorbell.listening and member.dozing, within=10)
        woke = await _wakes_until_handled(publishing, topic, c, 1)
        assert woke.rung >= 1 and woke.fallback == 0  # the ring woke it
    assert c.values() == ["0", "1"]


async def _ack_all(messages: Sequence[Message]) -> Sequence[Outcome]:
    return [ACK] * len(messages)


async def test_stopping_a_dozing_runner_is_prompt(
    buses: tuple[KafkaEventBus, KafkaEventBus], topic: str
) -> None:
    """Stopping ends a doze at once: the stop interrupts it, the fallback timer never runs out."""
    consuming, publishing = buses
    await publishing.ensure_topic(topic)
    member = consuming.consumer(topic, "stoppers", dead_letter_topic=topic + ".dead")
    # a fetch longer than the test: only the stop itself can end the doze before its timer
    runner = ConsumerRunner(member, _ack_all, name="stoppers", fetch_timeout=3600)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 10)
        await eventually(lambda: member.dozing)
        before = replace(member.wakes)
        runner.request_stop()
        await task  # bounded by the test's timeout
    finally:
        task.cancel()
    assert _since(before, member) == Wakes(interrupted=1)


async def test_under_a_steady_stream_a_lingering_member_takes_fewer_bigger_batches(
    buses: tuple[KafkaEventBus, KafkaEventBus], topic: str
) -> None:
    """...and its fetcher ticks often while awake (a resume waits at most one tick), slowly
    while it dozes (its only cost then)."""
    consuming, publishing = buses
    await publishing.ensure_topic(topic, 1)
    calls: list[list[str]] = []
    ticks: set[float | None] = set()

    async def handle(messages: Sequence[Message]) -> Sequence[Outcome]:
        calls.append([m.value.decode() for m in messages])
        ticks.add(member.fetcher_tick())
        return [ACK] * len(messages)

    member = consuming.consumer(
        topic, "lingerers", dead_letter_topic=topic + ".dead", linger_seconds=0.1
    )
    runner = ConsumerRunner(member, handle, name="lingerers", fetch_timeout=0.1)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 10)
        await eventually(lambda: member.dozing)
        assert member.fetcher_tick() == DOZING_TICK_SECONDS
        for n in range(60):  # about 0.6 s of one message every 10 ms
            await publishing.publish(topic, "one-key", str(n).encode())
            await asyncio.sleep(0.01)  # part of the scenario: a steady stream
        await eventually(lambda: sum(len(c) for c in calls) >= 60)
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, 10)
    assert [v for c in calls for v in c] == [str(n) for n in range(60)]  # all, in order
    assert len(calls) <= 20  # at most one fetch per linger, not one per message
    assert ticks == {AWAKE_TICK_SECONDS}
