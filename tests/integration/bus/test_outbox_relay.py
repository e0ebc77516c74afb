"""The outbox relay on both dialects: a SQLite store or a PostgreSQL store, Kafka as the bus.

The store writes events to its ``outbox`` table; the relay publishes them to
Kafka in the order they were written and deletes them once the broker has
acknowledged them. What is on the topic is read with a plain aiokafka consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pigeon.bootstrap import Pigeon, build
from pigeon.bus.kafka import KafkaEventBus
from pigeon.bus.partitioning import partition_for
from pigeon.config import Settings
from pigeon.domain.events import TOPIC_SMS_REQUESTED, SmsRequested, decode
from pigeon.domain.notification import Notification
from pigeon.services.outbox_relay import OutboxRelay
from pigeon.store.engine import DatabaseUrl
from pigeon.store.sql_store import SqlStore
from tests.integration.kafka_broker import KafkaBroker, running_broker
from tests.integration.kafka_reader import read_topic
from tests.integration.postgres import fresh_schema
from tests.support import eventually

RECIPIENTS = ("+14155550101", "+14155550102", "+14155550103")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store database of each dialect: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pigeon.db'}"
        return
    with fresh_schema() as url:
        yield url


def _settings(database_url: str, broker: KafkaBroker, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        bus_url=broker.url,
        kafka_partitions=3,
        kafka_idempotence=False,  # Tansu has no idempotent producer
        kafka_session_timeout_ms=3000,
        kafka_fetch_max_wait_ms=10,
        auto_migrate=True,
    )


@contextlib.asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[Pigeon]:
    """A started Pigeon (store with an outbox, Kafka bus), stopped on exit."""
    pigeon = build(settings)
    await pigeon.start()
    try:
        yield pigeon
    finally:
        await pigeon.stop()


@contextlib.asynccontextmanager
async def relaying(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    """``relay`` running as a task; asked to stop (and awaited) on exit."""
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        relay.request_stop()
        await asyncio.wait_for(task, 15)


async def accept_many(store: SqlStore, count: int) -> list[Notification]:
    """Accept ``count`` notifications one transaction after another, over three recipients."""
    account = await store.ensure_account("acme")
    accepted = []
    for i in range(count):
        notification = Notification.new_sms(
            account_id=account.id, to=RECIPIENTS[i % len(RECIPIENTS)], body=f"message {i}"
        )
        await store.accept(notification)
        accepted.append(notification)
    return accepted


async def outbox_size(store: SqlStore) -> int:
    """Rows waiting in the outbox."""
    return len(await store.outbox_batch(100_000))


async def requests_on_topic(broker: KafkaBroker, ids: set[str]) -> list[tuple[int, str, str]]:
    """``(partition, key, notification id)`` of each of ``ids``' SmsRequested on the topic."""

    def ours(records: list[object]) -> list[tuple[int, str, str]]:
        found = []
        for r in records:
            event = decode(r.value)  # type: ignore[attr-defined]
            if isinstance(event, SmsRequested) and event.notification_id in ids:
                found.append((r.partition, r.key.decode(), event.notification_id))  # type: ignore[attr-defined]
        return found

    records = await read_topic(
        broker.bootstrap_servers,
        TOPIC_SMS_REQUESTED,
        lambda got: {nid for _, _, nid in ours(list(got))} >= ids,
    )
    return ours(records)


async def test_the_relay_publishes_rows_in_the_order_written_and_then_deletes_them(
    database_url: str, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """60 rows over 3 keys reach Kafka once each, in write order per key; the outbox empties."""
    async with started(_settings(database_url, kafka_broker, tmp_path)) as pigeon:
        # Given 60 accepted notifications waiting in the outbox, no relay running
        accepted = await accept_many(pigeon.store, 60)
        assert await outbox_size(pigeon.store) == 60

        # When a relay runs
        relay = pigeon.relay()
        async with relaying(relay):
            await eventually(lambda: relay.published >= 60, within=30)
            assert relay.is_leader
            # Then the outbox is empty
            assert await outbox_size(pigeon.store) == 0

        # And each notification is on the topic once, keyed and partitioned by recipient,
        # in accept order per recipient
        on_topic = await requests_on_topic(kafka_broker, {n.id for n in accepted})
        assert sorted(nid for _, _, nid in on_topic) == sorted(n.id for n in accepted)
        partitions = await pigeon.bus.partitions(TOPIC_SMS_REQUESTED)
        for partition, key, _ in on_topic:
            assert partition == partition_for(key, partitions)
        for to in RECIPIENTS:
            assert [nid for _, key, nid in on_topic if key == to] == [
                n.id for n in accepted if n.to == to
            ]
        assert relay.published == 60


async def test_a_relay_that_cannot_reach_the_broker_keeps_the_rows_for_the_next_one(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the broker gone, publishing fails and nothing is deleted; a later relay sends all."""
    caplog.set_level(logging.WARNING, logger="pigeon.services.outbox_relay")
    url = DatabaseUrl.parse(database_url)
    store = SqlStore(url, outbox=True, auto_migrate=True)
    await store.start()
    try:
        with running_broker() as first_broker:
            # Given a relay that has published a first batch (and gives up on a
            # silent broker after 2 s instead of the default 30 s)
            bus = KafkaEventBus(
                first_broker.bootstrap_servers,
                default_partitions=3,
                idempotence=False,
                request_timeout_ms=2000,
            )
            await bus.start()
            relay = OutboxRelay(store, bus)
            try:
                async with relaying(relay):
                    await accept_many(store, 5)
                    await eventually(lambda: relay.published >= 5, within=30)

                    # When the broker stops and more notifications are accepted
                    first_broker.stop()
                    later = await accept_many(store, 20)

                    # Then the relay fails to publish them, and keeps them
                    await eventually(lambda: "outbox relay:" in caplog.text, within=60)
                    assert await outbox_size(store) == 20
                assert relay.published == 5
            finally:
                await bus.stop()

        # And a relay on a broker that answers publishes every one of them
        with running_broker() as second_broker:
            bus = KafkaEventBus(second_broker.bootstrap_servers, idempotence=False)
            await bus.start()
            relay = OutboxRelay(store, bus)
            try:
                async with relaying(relay):
                    await eventually(lambda: relay.published >= 20, within=30)
                    assert await outbox_size(store) == 0
            finally:
                await bus.stop()
            on_topic = await requests_on_topic(second_broker, {n.id for n in later})
            assert sorted(nid for _, _, nid in on_topic) == sorted(n.id for n in later)
    finally:
        await store.stop()


async def test_only_one_relay_is_active_and_a_standby_takes_over_when_it_stops(
    database_url: str, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """Two relays on one database: one publishes, the other waits, then takes over."""
    settings = _settings(database_url, kafka_broker, tmp_path)
    async with started(settings) as first, started(settings) as second:
        relays = [first.relay(), second.relay()]
        tasks = [asyncio.create_task(r.run()) for r in relays]
        try:
            # Given two relays running, exactly one becomes active
            await eventually(lambda: any(r.is_leader for r in relays), within=30)
            [leader] = [r for r in relays if r.is_leader]
            [standby] = [r for r in relays if r is not leader]
            # the other one keeps asking and is refused: two refusals after the first
            # relay became active show that it stands by, not merely that it is slow
            refused = standby.refused
            await eventually(lambda: standby.refused >= refused + 2, within=30)
            assert leader.is_leader and not standby.is_leader
            active_store = first if leader is relays[0] else second

            # When notifications are accepted, the active one publishes all of them
            accepted = await accept_many(active_store.store, 10)
            await eventually(lambda: leader.published >= 10, within=30)
            assert standby.published == 0

            # When the active relay stops, the standby takes over and publishes the rest
            leader.request_stop()
            await asyncio.wait_for(tasks[relays.index(leader)], 15)
            await eventually(lambda: standby.is_leader, within=30)
            more = await accept_many(active_store.store, 10)
            await eventually(lambda: standby.published >= 10, within=30)
            on_topic = await requests_on_topic(kafka_broker, {n.id for n in accepted + more})
            assert sorted(nid for _, _, nid in on_topic) == sorted(n.id for n in accepted + more)
        finally:
            for relay in relays:
                relay.request_stop()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
