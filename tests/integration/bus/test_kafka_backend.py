"""What the Kafka backend adds to the contract: its URL, its errors and its wire layout."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pigeon.bus.factory import bus_from_url
from pigeon.bus.kafka import KafkaEventBus
from pigeon.bus.kafka_wire import (
    HEADER_RETRY_ATTEMPT,
    HEADER_RETRY_NOT_BEFORE,
    HEADER_RETRY_OFFSET,
    HEADER_RETRY_TOPIC,
    retry_topic_for,
)
from pigeon.bus.partitioning import partition_for
from pigeon.bus.port import ACK, Message, Outcome, RetryLater
from pigeon.errors import BusUnavailable, ConfigurationError
from tests.integration.kafka_broker import TEST_KAFKA_OPTIONS, KafkaBroker
from tests.support import free_port

from .conftest import eventually
from .test_bus_contract import collecting


@pytest.fixture
async def kafka_bus(kafka_broker: KafkaBroker) -> AsyncIterator[KafkaEventBus]:
    """A started Kafka bus on the session's broker."""
    bus = bus_from_url(kafka_broker.url, partitions=4, **TEST_KAFKA_OPTIONS)
    assert isinstance(bus, KafkaEventBus)
    await bus.start()
    yield bus
    await bus.stop()


@pytest.mark.parametrize("url", ["kafka://", "kafka://host", "kafka://h:99999", "kafka://h:1,"])
def test_a_kafka_url_without_host_and_port_is_a_configuration_error(url: str) -> None:
    """Every bootstrap server must be ``host:port``; the error names the setting."""
    with pytest.raises(ConfigurationError, match="PIGEON_BUS_URL"):
        bus_from_url(url)


async def test_unreachable_bootstrap_servers_make_start_fail_with_bus_unavailable() -> None:
    """Nothing listens: ``start()`` raises BusUnavailable naming the servers, with the cause."""
    servers = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    bus = bus_from_url(f"kafka://{servers}", idempotence=False)
    with pytest.raises(BusUnavailable, match=servers) as caught:
        await bus.start()
    assert caught.value.__cause__ is not None


async def test_topics_get_the_configured_partitions_and_keys_the_shared_partitioner(
    kafka_bus: KafkaEventBus, topic: str
) -> None:
    """A created topic has the asked partitions; a key lands where ``partition_for`` says."""
    await kafka_bus.ensure_topic(topic, 6)
    other = KafkaEventBus(kafka_bus.bootstrap_servers, idempotence=False)  # no cache
    await other.start()
    try:
        assert await other.partitions(topic) == 6
    finally:
        await other.stop()
    keys = [f"+1415555{i:04d}" for i in range(12)]
    async with collecting(kafka_bus, topic, "partitioning") as c:
        for key in keys:
            await kafka_bus.publish(topic, key, b"x")
        await eventually(lambda: len(c.seen) >= len(keys))
    assert {m.key: m.partition for m in c.seen} == {k: partition_for(k, 6) for k in keys}


async def test_a_retry_goes_through_the_groups_retry_topic_and_keeps_the_original_identity(
    kafka_bus: KafkaEventBus, topic: str
) -> None:
    """RetryLater writes ``<topic>.retry.<group>``; the redelivery looks like the original."""

    def decide(m: Message) -> Outcome:
        return RetryLater(0.2, "busy") if m.attempt == 1 else ACK

    await kafka_bus.ensure_topic(topic)
    await kafka_bus.publish(topic, "k", b"payload", {"pigeon-event-type": "SmsRequested"})
    retry_topic = retry_topic_for(topic, "sender")
    async with collecting(kafka_bus, topic, "sender", decide) as c:
        await eventually(lambda: len(c.seen) >= 2)
        async with collecting(kafka_bus, retry_topic, "inspector") as raw:
            await eventually(lambda: len(raw.seen) >= 1)
    first, second = c.seen[:2]
    assert (second.topic, second.partition, second.offset) == (
        first.topic,
        first.partition,
        first.offset,
    )
    assert (second.attempt, second.key, second.value) == (2, "k", b"payload")
    assert dict(second.headers) == {"pigeon-event-type": "SmsRequested"}
    assert second.retry_id is not None
    (record,) = raw.seen
    assert record.headers[HEADER_RETRY_TOPIC] == topic
    assert record.headers[HEADER_RETRY_OFFSET] == str(first.offset)
    assert record.headers[HEADER_RETRY_ATTEMPT] == "2"
    assert float(record.headers[HEADER_RETRY_NOT_BEFORE]) > 0
    assert record.partition == first.partition  # same slot: same member
