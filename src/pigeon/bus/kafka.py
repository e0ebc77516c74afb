"""The Kafka event bus (aiokafka): for production, many processes, many machines.

Topics are created with the configured partitions and replication; a key picks
its partition with :func:`~pigeon.bus.partitioning.partition_for` - the same
CRC32 as the SQLite backend - so both backends partition identically. Every
publish waits for ``acks=all``; the producer is idempotent by default (turn it
off only for brokers without idempotent producers, such as Tansu in tests).

Consumer groups are Kafka consumer groups with manual commits; retry-later goes
through a per-group retry topic (see :mod:`pigeon.bus.kafka_consumer`).

aiokafka is optional (``pip install 'pigeon-notify[kafka]'``) and imported only
in :meth:`KafkaEventBus.start`, so importing this module never needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NoReturn

from pigeon.bus.kafka_consumer import KafkaConsumer
from pigeon.bus.kafka_doorbell import Doorbell
from pigeon.bus.kafka_wire import OutRecord, bus_error, describe, encode_headers
from pigeon.bus.partitioning import partition_for
from pigeon.errors import BusError, BusUnavailable, ConfigurationError

log = logging.getLogger(__name__)

__all__ = [
    "KAFKA_EXTRA_HINT",
    "KafkaConsumer",
    "KafkaConsumerSettings",
    "KafkaEventBus",
    "import_aiokafka",
]

KAFKA_EXTRA_HINT = "kafka:// needs the kafka extra: pip install 'pigeon-notify[kafka]'"
_TOPIC_ALREADY_EXISTS = 36


def import_aiokafka(setting: str = "PIGEON_BUS_URL") -> ModuleType:
    """The aiokafka package, or a :class:`ConfigurationError` saying how to install it."""
    try:
        import aiokafka  # type: ignore[import-untyped]  # ships no type hints
        import aiokafka.admin  # type: ignore[import-untyped]
        import aiokafka.errors  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigurationError(setting, KAFKA_EXTRA_HINT) from exc
    module: ModuleType = aiokafka
    return module


@dataclass(frozen=True, slots=True)
class KafkaConsumerSettings:
    """Client settings every member of a bus shares."""

    bootstrap_servers: str
    client_id: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    fetch_max_wait_ms: int
    #: with a doorbell: how long the broker may hold a fetch while messages flow
    awake_fetch_wait_ms: int
    request_timeout_ms: int
    #: how long revoked partitions wait for their open batches to settle
    drain_seconds: float


@dataclass(frozen=True, slots=True)
class _Connected:
    aiokafka: ModuleType
    producer: Any  # aiokafka.AIOKafkaProducer (untyped library)
    admin: Any  # aiokafka.admin.AIOKafkaAdminClient


class _NotConnected:
    """The bus before ``start()`` / after ``stop()``: any use is a clear error."""

    def __getattr__(self, name: str) -> NoReturn:
        raise BusError("the Kafka bus is not started: await bus.start() first")


class KafkaEventBus:
    """:class:`~pigeon.bus.port.EventBus` over a Kafka cluster."""

    #: messages a consumer takes per fetch (``max_records``, across its partitions)
    fetch_size = 256

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        default_partitions: int = 12,
        replication_factor: int = 1,
        idempotence: bool = True,
        client_id: str = "pigeon",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        fetch_max_wait_ms: int = 500,
        request_timeout_ms: int = 30_000,
        drain_seconds: float | None = None,
        doorbell: Doorbell | None = None,
        awake_fetch_wait_ms: int = 10,
    ) -> None:
        """``doorbell``: consumers doze when idle and publishers ring it (see
        :mod:`pigeon.bus.kafka_doorbell`); awake, they fetch with
        ``awake_fetch_wait_ms``. Without one, consumers long-poll with
        ``fetch_max_wait_ms``."""
        self.bootstrap_servers = bootstrap_servers
        self.default_partitions = default_partitions
        self.replication_factor = replication_factor
        self.idempotence = idempotence
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.consumer_settings = KafkaConsumerSettings(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,
            awake_fetch_wait_ms=awake_fetch_wait_ms,
            request_timeout_ms=request_timeout_ms,
            # revoked partitions wait for their batches for at most half the
            # time the broker waits for this member to rejoin
            drain_seconds=drain_seconds if drain_seconds is not None else session_timeout_ms / 2000,
        )
        self.doorbell = doorbell
        self._link: _Connected | _NotConnected = _NotConnected()
        self._partitions: dict[str, int] = {}

    @property
    def aiokafka(self) -> ModuleType:
        """The aiokafka package (once started)."""
        return self._link.aiokafka

    @property
    def admin(self) -> Any:
        """The admin client (once started): topics, consumer groups' committed offsets."""
        return self._link.admin

    async def start(self) -> None:
        """Connect the producer and the admin client to the cluster."""
        aiokafka = import_aiokafka()
        common: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
        }
        producer = aiokafka.AIOKafkaProducer(
            **common, acks="all", enable_idempotence=self.idempotence
        )
        admin = aiokafka.admin.AIOKafkaAdminClient(**common)
        try:
            await producer.start()
            await admin.start()
        except aiokafka.errors.KafkaError as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await admin.close()
            hint = "check PIGEON_BUS_URL and that the brokers are up"
            if self.idempotence and not isinstance(exc, aiokafka.errors.KafkaConnectionError):
                hint += "; a broker without idempotent producers needs idempotence off"
            raise BusUnavailable(
                f"cannot connect to Kafka at {self.bootstrap_servers} ({hint}): {describe(exc)}"
            ) from exc
        self._link = _Connected(aiokafka, producer, admin)

    async def stop(self) -> None:
        """Flush and close the producer and the admin client."""
        link, self._link = self._link, _NotConnected()
        if isinstance(link, _Connected):
            try:
                await link.producer.stop()
            finally:
                await link.admin.close()
                if self.doorbell is not None:
                    await self.doorbell.stop()

    async def ping(self, within: float = 2.0) -> None:
        """Raise :class:`BusUnavailable` unless a broker answers a metadata request."""
        producer, errors = self._link.producer, self._link.aiokafka.errors
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), within)
        except (errors.KafkaError, TimeoutError, OSError) as exc:
            raise BusUnavailable(
                f"Kafka at {self.bootstrap_servers} does not answer: {describe(exc)}"
            ) from exc

    async def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` if needed; an existing topic keeps its partition count."""
        await self.partitions(topic, partitions)

    async def partitions(self, topic: str, create_with: int | None = None) -> int:
        """The partition count of ``topic``, creating the topic if it is new."""
        known = self._partitions.get(topic)
        if known is not None:
            return known
        producer, errors = self._link.producer, self._link.aiokafka.errors
        await self._create_topic(topic, create_with or self.default_partitions)
        try:
            count = len(await producer.partitions_for(topic))
        except errors.KafkaError as exc:
            raise bus_error(exc, f"reading the partitions of {topic!r}") from exc
        self._partitions[topic] = count
        return count

    async def _create_topic(self, topic: str, partitions: int) -> None:
        aiokafka, admin = self._link.aiokafka, self._link.admin
        new_topic = aiokafka.admin.NewTopic(topic, partitions, self.replication_factor)
        try:
            response = await admin.create_topics([new_topic])
        except aiokafka.errors.KafkaError as exc:
            raise bus_error(exc, f"creating topic {topic!r}") from exc
        for name, code, *message in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                error = aiokafka.errors.for_code(code)
                raise BusError(
                    f"Kafka: cannot create topic {name!r} ({partitions} partitions, "
                    f"replication {self.replication_factor}): {error.__name__} {message}"
                )

    async def publish(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Append one message; returns once all in-sync replicas have it."""
        partition = partition_for(key, await self.partitions(topic))
        await self.produce([OutRecord(topic, partition, key, value, headers or {})])

    async def produce(self, records: Sequence[OutRecord]) -> None:
        """Send ``records`` (partitions chosen) and wait until every one is acknowledged."""
        if not records:
            return
        producer, errors = self._link.producer, self._link.aiokafka.errors
        try:
            pending = [
                await producer.send(
                    record.topic,
                    record.value,
                    key=record.key.encode(),
                    partition=record.partition,
                    headers=encode_headers(record.headers),
                )
                for record in records
            ]
            results = await asyncio.gather(*pending, return_exceptions=True)
        except errors.KafkaError as exc:
            raise bus_error(exc, f"publishing to {records[0].topic!r}") from exc
        for result in results:
            if isinstance(result, BaseException):
                raise bus_error(result, f"publishing to {records[0].topic!r}") from result
        if self.doorbell is not None:
            self.doorbell.ring({record.topic for record in records})

    def consumer(
        self, topic: str, group: str, *, dead_letter_topic: str, linger_seconds: float = 0.0
    ) -> KafkaConsumer:
        """A new member of consumer group ``group`` reading ``topic``.

        ``linger_seconds``: with a doorbell, under a steady stream the member
        fetches at most this often (bigger batches, fewer transactions); after
        a quiet spell it fetches at once. Without one, long fetches batch already.
        """
        return KafkaConsumer(
            self,
            topic,
            group,
            dead_letter_topic,
            self.consumer_settings,
            linger_seconds=linger_seconds,
        )
