"""Consumer lag and the store's backlog at /metrics, on both stacks.

A real Pigeon (embedded SQLite, or Kafka + PostgreSQL) is built and started in
this process; its API is driven over in-process HTTP and its workers run as
tasks, so the test decides which group has read what.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pigeon import metrics
from pigeon.bootstrap import Pigeon, Runner, build
from pigeon.config import Settings
from pigeon.domain.events import TOPIC_SMS_REQUESTED
from pigeon.metrics.summary import Snapshot, snapshot
from pigeon.services.projector import USAGE_GROUP
from pigeon.services.sms_sender import GROUP as SENDER_GROUP
from tests.integration.kafka_broker import KafkaBroker, kafka_broker, kafka_stack_settings
from tests.integration.postgres import fresh_schema
from tests.support import eventually

__all__ = ["kafka_broker"]

SENT = 4


@pytest.fixture(params=("sqlite", "kafka+postgres"))
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings of each stack (Kafka: the session's broker and a fresh schema)."""
    metrics.enable()  # before anything is built: the components bind their metrics
    common = Settings(data_dir=tmp_path, bus_partitions=2, auto_migrate=True)
    if request.param == "sqlite":
        yield common
        return
    broker: KafkaBroker = request.getfixturevalue("kafka_broker")
    with fresh_schema() as database_url:
        yield common.model_copy(update=kafka_stack_settings(broker, database_url))


@pytest.fixture
async def pigeon(settings: Settings) -> AsyncIterator[Pigeon]:
    """Pigeon built from the settings and started (no worker runs yet)."""
    app = build(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@contextlib.asynccontextmanager
async def running(runners: list[Runner]) -> AsyncIterator[None]:
    """Run ``runners`` as tasks for the block, then stop them."""
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        yield
    finally:
        for runner in runners:
            runner.request_stop()
        await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            task.cancel()


async def scrape(http: httpx.AsyncClient) -> Snapshot:
    """GET /metrics, parsed as Prometheus text."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return snapshot(text_string_to_metric_families(response.text))


def lag(snap: Snapshot, group: str, topic: str = TOPIC_SMS_REQUESTED) -> int | None:
    """The total lag of ``group`` on ``topic``, or None when not measured."""
    found = [item.lag for item in snap.lags if item.group == group and item.topic == topic]
    return sum(found) if found else None


async def test_lag_counts_per_group_what_it_has_not_read(pigeon: Pigeon) -> None:
    """Given four SMS in the log and no worker, the sender and the usage meter each lag by
    four; once the usage meter runs, its lag falls to 0 while the sender's stays four.
    Before that, an SMS not yet relayed waits in the outbox (Kafka)."""
    _, key = await pigeon.store.create_api_key("acme")
    transport = httpx.ASGITransport(app=pigeon.api())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

        async def send(n: int) -> None:
            answer = await http.post(
                "/v1/notifications",
                json={"channel": "sms", "to": f"+1415555{n:04d}", "body": "lag"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 202

        await send(0)
        # Then the accepted event still waits where the API wrote it
        before = await scrape(http)
        assert before.dead_letters_waiting == 0
        if pigeon.settings.uses_kafka:
            assert before.outbox_rows == 1
            assert before.outbox_oldest_age_seconds is not None
            # one produce per SMS: Tansu's end offsets point at the start of the last batch
            # + 1 (shared/KAFKA-TESTING.md, pitfall 4), so a batch of several would hide lag
            async with running([pigeon.relay()]):
                await eventually(lambda: outbox_empty(http), within=30)
                for n in range(1, SENT):
                    await send(n)
                    await eventually(lambda: outbox_empty(http), within=30)
        else:
            assert before.outbox_rows is None  # the embedded bus has no outbox
            for n in range(1, SENT):
                await send(n)
            await pigeon.store.move_intake()  # as a worker's intake relay would

        # When they are in the log, every group that reads requests lags by all of them
        async def lags_by_all() -> bool:
            snap = await scrape(http)
            return lag(snap, SENDER_GROUP) == SENT and lag(snap, USAGE_GROUP) == SENT

        await eventually(lags_by_all, within=30, interval=0.1)

        # When the usage meter runs, only its lag falls
        async with running(await pigeon.workers("usage-meter")):

            async def meter_caught_up() -> bool:
                return lag(await scrape(http), USAGE_GROUP) == 0

            await eventually(meter_caught_up, within=60, interval=0.1)
        after = await scrape(http)
        assert lag(after, SENDER_GROUP) == SENT
        assert after.group_lag()[USAGE_GROUP] == 0  # nothing waits in its retry topic either


async def outbox_empty(http: httpx.AsyncClient) -> bool:
    """Whether the relay has published every outbox row."""
    return (await scrape(http)).outbox_rows == 0


async def test_the_usage_meters_batches_are_counted_by_outcome(pigeon: Pigeon) -> None:
    """A consumer runner records its batches: sizes, handler time and acked messages."""
    registry = metrics.registry()
    assert registry is not None
    labels = {"group": USAGE_GROUP, "topic": TOPIC_SMS_REQUESTED}

    def value(name: str, **extra: str) -> float:
        return registry.get_sample_value(name, {**labels, **extra}) or 0.0

    acked = value("pigeon_consumer_messages_total", outcome="ack")
    batches = value("pigeon_consumer_batch_size_messages_count")
    _, key = await pigeon.store.create_api_key("acme")
    transport = httpx.ASGITransport(app=pigeon.api())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for n in range(2):
            answer = await http.post(
                "/v1/notifications",
                json={"channel": "sms", "to": f"+1415666{n:04d}", "body": "count"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 202
    runners = await pigeon.workers("usage-meter")
    if pigeon.settings.uses_kafka:
        runners.append(pigeon.relay())
    async with running(runners):
        await eventually(
            lambda: value("pigeon_consumer_messages_total", outcome="ack") >= acked + 2, within=60
        )
    assert value("pigeon_consumer_batch_size_messages_count") > batches
    assert value("pigeon_consumer_handler_duration_seconds_count") > 0
    assert value("pigeon_consumer_messages_total", outcome="dead_letter") == 0
