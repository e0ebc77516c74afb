"""The one place that reads settings and wires adapters to services.

Nothing here connects at import time: :func:`build` makes the object graph,
:meth:`Pigeon.start` opens the bus and the store, :meth:`Pigeon.stop` closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from fastapi import FastAPI

from pigeon.api.app import TWILIO_STATUS_PATH, ApiConfig, create_app
from pigeon.api.stream import StatusStreams
from pigeon.bus.factory import bus_from_url
from pigeon.bus.kafka import KafkaEventBus
from pigeon.bus.kafka_doorbell import PostgresDoorbell
from pigeon.bus.runner import BatchHandler, ConsumerRunner
from pigeon.bus.sqlite import SqliteEventBus
from pigeon.bus.tail import open_tail
from pigeon.config import Settings
from pigeon.console import ConsoleOptions
from pigeon.console.reads import LagRow
from pigeon.domain.events import (
    TOPIC_SMS_DEAD,
    TOPIC_SMS_REQUESTED,
    TOPIC_STATUS,
    TOPIC_STATUS_DEAD,
)
from pigeon.domain.retry import RetryPolicy
from pigeon.errors import BusUnavailable, ConfigurationError, StoreUnavailable
from pigeon.logs import AccessLog
from pigeon.metrics.endpoint import MetricsEndpoint
from pigeon.metrics.lag import KafkaLag, PartitionLag, sqlite_lag
from pigeon.metrics.state import StateProbe
from pigeon.providers.factory import (
    ProviderEntry,
    ProviderSettings,
    build_sms_provider,
    parse_providers,
)
from pigeon.providers.failover import FailoverProvider
from pigeon.providers.port import SmsProvider
from pigeon.services.dead_letter_recorder import GROUP as DEAD_LETTER_GROUP
from pigeon.services.dead_letter_recorder import DeadLetterRecorder
from pigeon.services.intake_relay import IntakeRelay
from pigeon.services.outbox_relay import OutboxRelay
from pigeon.services.projector import STATUS_GROUP, USAGE_GROUP, StatusProjector, UsageMeter
from pigeon.services.retention import PlannerStatistics, Retention, RetentionPolicy
from pigeon.services.sms_sender import GROUP as SENDER_GROUP
from pigeon.services.sms_sender import SmsSender
from pigeon.services.status_poller import StatusPoller
from pigeon.services.webhook_dispatcher import GROUP as WEBHOOK_GROUP
from pigeon.services.webhook_dispatcher import SenderSettings, WebhookRecorder, WebhookSender
from pigeon.services.webhook_http import AiohttpPoster
from pigeon.services.webhook_retention import WebhookRetention
from pigeon.store import migrate
from pigeon.store.sql_store import SqlStore


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic a worker reads, as which group, and where what it cannot handle goes."""

    topic: str
    group: str
    dead_letter_topic: str


#: The worker topology, in one place: what each consumer worker (``pigeon worker
#: NAME``) reads. ``workers()`` builds one handler per subscription from it; the
#: benchmark and the tests read it too, instead of restating it.
SUBSCRIPTIONS: dict[str, tuple[Subscription, ...]] = {
    "sms-sender": (Subscription(TOPIC_SMS_REQUESTED, SENDER_GROUP, TOPIC_SMS_DEAD),),
    "usage-meter": (Subscription(TOPIC_SMS_REQUESTED, USAGE_GROUP, TOPIC_SMS_DEAD),),
    "status-projector": (
        Subscription(TOPIC_STATUS, STATUS_GROUP, TOPIC_STATUS_DEAD),
        Subscription(TOPIC_SMS_REQUESTED, STATUS_GROUP, TOPIC_SMS_DEAD),
        # dead letters become rows operators can list and replay ('pigeon dlq')
        *(
            Subscription(dead, DEAD_LETTER_GROUP, dead + ".unrecorded")
            for dead in (TOPIC_SMS_DEAD, TOPIC_STATUS_DEAD)
        ),
    ),
    # status webhooks: deliveries written by its bus handler, sent by its own loop
    "webhook-dispatcher": (Subscription(TOPIC_STATUS, WEBHOOK_GROUP, TOPIC_STATUS_DEAD),),
}
#: (topic, group): every group and what it reads (consumer lag is measured for these)
SUBSCRIPTION_PAIRS = tuple((s.topic, s.group) for subs in SUBSCRIPTIONS.values() for s in subs)
#: the consumers of the events; every deployment runs each at least once
CONSUMERS = tuple(SUBSCRIPTIONS)
#: publishes the store's outbox to Kafka (needed only with PIGEON_BUS_URL=kafka://)
RELAY = "outbox-relay"
WORKERS = (*CONSUMERS, RELAY)
TOPICS = (TOPIC_SMS_REQUESTED, TOPIC_STATUS, TOPIC_SMS_DEAD, TOPIC_STATUS_DEAD)
#: the groups that read each topic: the embedded log keeps every event until each of
#: them has read it, even one whose worker has not started yet
READERS = {
    topic: tuple(
        dict.fromkeys(s.group for subs in SUBSCRIPTIONS.values() for s in subs if s.topic == topic)
    )
    for topic in TOPICS
}


class Runner(Protocol):
    """A long-running loop of a worker process."""

    async def run(self) -> None:
        """Work until asked to stop."""
        ...

    def request_stop(self) -> None:
        """Finish what is in hand, then return from :meth:`run`."""
        ...


@dataclass
class Pigeon:
    """The wired application: bus, store, and factories for its parts."""

    settings: Settings
    bus: SqliteEventBus | KafkaEventBus
    store: SqlStore
    partitions: dict[str, int] = field(default_factory=dict)
    _providers: list[SmsProvider] = field(default_factory=list)
    #: called after each store commit in this process (wakes an in-process relay)
    _on_commit: list[Callable[[], None]] = field(default_factory=list)
    #: the process's intake relay (embedded bus), made with its first worker
    _intake_relay: list[IntakeRelay] = field(default_factory=list)
    #: what /metrics measures at scrape time (made with the API), closed on stop
    _state_probes: list[StateProbe] = field(default_factory=list)

    async def start(self) -> None:
        """Open the bus and the store (creating topics if needed, checking the schema).

        A broker or database that does not answer at start-up is a
        :class:`ConfigurationError` naming its setting: nothing can work yet,
        and the URL is the first thing to check.
        """
        if self.store.url.dialect == "sqlite":
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:  # a newer Pigeon's database: refused before the bus writes its tables into it
            await asyncio.to_thread(migrate.refuse_unknown, self.store.url)
        except StoreUnavailable as exc:
            raise ConfigurationError("PIGEON_DATABASE_URL", str(exc)) from exc
        try:
            with _quiet("aiokafka"):  # its own connection errors would repeat ours
                await self.bus.start()
        except BusUnavailable as exc:
            raise ConfigurationError("PIGEON_BUS_URL", str(exc)) from exc
        try:
            for topic in TOPICS:
                self.partitions[topic] = await self.bus.partitions(topic)
            try:
                await self.store.start()
            except StoreUnavailable as exc:
                raise ConfigurationError("PIGEON_DATABASE_URL", str(exc)) from exc
            if isinstance(self.bus, SqliteEventBus):
                # one writer per process: the bus's writes join the store's group commits
                self.bus.attach_writer(self.store.submit_sqlite)
        except BaseException:
            await self.bus.stop()
            raise

    async def check_ready(self) -> None:
        """Raise a :class:`~pigeon.errors.PigeonError` unless the bus answers."""
        if isinstance(self.bus, KafkaEventBus):
            await self.bus.ping()

    def relay(self) -> OutboxRelay:
        """The outbox relay (Kafka only); woken by this process's own commits."""
        if not isinstance(self.bus, KafkaEventBus):
            raise ConfigurationError(
                "PIGEON_BUS_URL",
                "the outbox relay publishes to Kafka; the embedded SQLite bus needs none "
                "(its log is written in the store's own transaction)",
            )
        relay = OutboxRelay(self.store, self.bus, linger=self.settings.relay_linger_ms / 1000)
        self._on_commit.append(relay.wake)
        return relay

    async def stop(self) -> None:
        """Close providers, the store and the bus."""
        for probe in self._state_probes:
            await probe.close()
        for provider in self._providers:
            await provider.stop()
        await self.store.stop()
        await self.bus.stop()

    @functools.cached_property
    def streams(self) -> StatusStreams:
        """The API's live streams (``GET /v1/notifications/stream``), read from this bus."""
        return StatusStreams(lambda topics: open_tail(self.bus, topics))

    def api(self) -> FastAPI:
        """The HTTP API on this store."""
        app = create_app(
            self.store,
            ApiConfig(
                streams=self.streams,
                status_callback_url=self.status_callback_url,
                twilio_auth_token=self.settings.twilio_auth_token,
                other_auth_tokens=tuple(
                    entry.auth_token for entry in provider_settings(self.settings).entries
                ),
                max_request_bytes=self.settings.max_request_bytes,
                max_batch_bytes=self.settings.max_batch_bytes,
                ready_checks=(self.check_ready,),
                console=ConsoleOptions(
                    sandbox_urls=tuple(
                        e.base_url for e in provider_settings(self.settings).entries
                    ),
                    # Kafka's lag from the metrics probe; the console reads SQLite's itself
                    lag=self._console_lag if isinstance(self.bus, KafkaEventBus) else None,
                ),
                metrics=self.metrics_endpoint(),
            ),
        )
        if self.settings.access_log:  # added last, so outermost: it sees the fast path too
            app.add_middleware(AccessLog)
        return app

    def metrics_endpoint(self) -> MetricsEndpoint:
        """What ``/metrics`` serves here: this process's metrics (every process's under
        ``pigeon run``) and the lag and backlog of the whole deployment, measured when
        scraped; its :meth:`~MetricsEndpoint.snapshot` is the same as Python data."""
        return MetricsEndpoint(self._state_probe())

    async def consumer_lag(self) -> list[PartitionLag]:
        """How far each group is behind, per topic and partition, measured now."""
        return await self._state_probe().lag()

    async def _console_lag(self) -> list[LagRow]:
        return [LagRow(x.group, x.topic, x.partition, x.lag) for x in await self.consumer_lag()]

    def _state_probe(self) -> StateProbe:
        """The one lag and backlog probe of this process (opened lazily, closed on stop)."""
        if self._state_probes:
            return self._state_probes[0]
        subscriptions = SUBSCRIPTION_PAIRS
        bus = self.bus
        if isinstance(bus, KafkaEventBus):
            kafka = KafkaLag(bus)

            async def kafka_lag() -> list[PartitionLag]:
                return await kafka.measure(subscriptions)

            probe = StateProbe(
                lag=kafka_lag, store_read=self.store.read_with, with_outbox=True, close=kafka.close
            )
        else:
            path = self.settings.bus_path

            async def embedded_lag() -> list[PartitionLag]:
                return await asyncio.to_thread(sqlite_lag, path, subscriptions)

            probe = StateProbe(lag=embedded_lag, store_read=self.store.read_with, with_outbox=False)
        self._state_probes.append(probe)
        return probe

    @property
    def status_callback_url(self) -> str:
        """Where providers send status callbacks."""
        return self.settings.callback_base_url + TWILIO_STATUS_PATH

    def retry_policy(self) -> RetryPolicy:
        """The SMS retry policy from settings."""
        s = self.settings
        return RetryPolicy(s.sms_max_attempts, s.retry_base_seconds, s.retry_max_seconds)

    def retention_policy(self) -> RetentionPolicy:
        """How long logs and rows are kept, from settings."""
        s = self.settings
        return RetentionPolicy(
            log_retention=timedelta(hours=s.bus_retention_hours),
            notification_retention=(
                timedelta(days=s.notification_retention_days)
                if s.notification_retention_days
                else None
            ),
            interval_seconds=s.retention_interval_seconds,
            chunk_rows=s.retention_chunk_rows,
        )

    def retention(self) -> Retention:
        """The retention passes (run by the status-projector worker, on both stacks)."""
        compactor = self.bus if isinstance(self.bus, SqliteEventBus) else None
        return Retention(self.store, compactor, self.retention_policy())

    async def workers(self, name: str) -> list[Runner]:
        """The loops behind ``pigeon worker NAME``."""
        if name == RELAY:
            return [self.relay()]
        periodic: list[Runner] = []
        if name not in SUBSCRIPTIONS:
            raise ValueError(f"unknown worker {name!r}; choose one of {', '.join(WORKERS)}")
        handlers: dict[str, Callable[[], BatchHandler]] = {
            SENDER_GROUP: self._sender,  # builds (and registers) the sender's provider
            USAGE_GROUP: lambda: UsageMeter(self.store),
            STATUS_GROUP: lambda: StatusProjector(self.store),
            DEAD_LETTER_GROUP: lambda: DeadLetterRecorder(self.store),
        }
        if name == "webhook-dispatcher":
            webhook_sender = self.webhook_sender()
            periodic.append(webhook_sender)
            if self.settings.notification_retention_days:
                periodic.append(
                    WebhookRetention(
                        self.store.webhooks,
                        keep=timedelta(days=self.settings.notification_retention_days),
                        interval_seconds=self.settings.retention_interval_seconds,
                        chunk_rows=self.settings.retention_chunk_rows,
                    )
                )
            handlers[WEBHOOK_GROUP] = lambda: WebhookRecorder(
                self.store.webhooks, webhook_sender.wake
            )
        specs = [
            (s.topic, s.group, s.dead_letter_topic, handlers[s.group]())
            for s in SUBSCRIPTIONS[name]
        ]
        if name == "sms-sender":
            provider = self._providers[-1]
            assert isinstance(provider, FailoverProvider)
            periodic.append(
                StatusPoller(
                    self.store,
                    provider,
                    after_seconds=self.settings.status_poll_after_seconds,
                    interval_seconds=self.settings.status_poll_interval_seconds,
                )
            )
        if name == "status-projector":
            # every stack runs this worker; several running passes at once is harmless
            periodic.append(self.retention())
            if self.store.keeps_planner_statistics:
                periodic.append(PlannerStatistics(self.store))
        if isinstance(self.bus, SqliteEventBus) and not self._intake_relay:
            # one per worker process: what the API accepted reaches the log whichever runs
            self._intake_relay.append(IntakeRelay(self.store))
            periodic.extend(self._intake_relay)
        for provider in self._providers:
            await provider.start()
        runners: list[Runner] = [
            ConsumerRunner(
                self.bus.consumer(
                    topic,
                    group,
                    dead_letter_topic=dead,
                    # the sender is on a notification's critical path; the others can wait
                    linger_seconds=(
                        self.settings.sender_linger_ms
                        if group == SENDER_GROUP
                        else self.settings.bus_linger_ms
                    )
                    / 1000,
                ),
                handler,
                name=f"{name}:{topic}",
                max_batch=self.bus.fetch_size,
                policy=self.retry_policy(),
                # set-based handlers: every partition's batch in one transaction; the
                # sender keeps partitions apart so one slow recipient holds up no other
                together=group != SENDER_GROUP,
            )
            for topic, group, dead, handler in specs
        ]
        return runners + periodic

    @property
    def sms_providers(self) -> tuple[SmsProvider, ...]:
        """The providers this process's SMS senders were built with, oldest first."""
        return tuple(self._providers)

    def all_workers(self) -> list[str]:
        """What ``pigeon run`` runs: every consumer, and the relay with Kafka."""
        return worker_names(self.settings)

    def webhook_sender(self) -> WebhookSender:
        """The webhook dispatcher's sending loop, from settings."""
        s = self.settings
        return WebhookSender(
            self.store.webhooks,
            AiohttpPoster(
                timeout_seconds=s.webhook_timeout_seconds, max_connections=s.webhook_concurrency
            ),
            SenderSettings(
                policy=RetryPolicy(
                    s.webhook_max_attempts,
                    s.webhook_retry_base_seconds,
                    s.webhook_retry_max_seconds,
                ),
                disable_after=timedelta(hours=s.webhook_disable_after_hours),
                timeout_seconds=s.webhook_timeout_seconds,
                concurrency=s.webhook_concurrency,
                breaker_failure_threshold=s.breaker_failure_threshold,
                breaker_reset_seconds=s.breaker_reset_seconds,
            ),
        )

    def _sender(self) -> SmsSender:
        s = self.settings
        provider = build_sms_provider(provider_settings(s))
        self._providers.append(provider)
        sender = SmsSender(
            self.store,
            provider,
            callback_url=self.status_callback_url,
            policy=self.retry_policy(),
            concurrency=s.sender_concurrency,
        )
        return sender


def provider_settings(s: Settings) -> ProviderSettings:
    """The SMS providers the settings name: a failover list, or the one default provider."""
    entries = (
        parse_providers(s.sms_providers)
        if s.sms_providers.strip()
        else [
            ProviderEntry(
                name="twilio",
                base_url=s.sms_provider_url,
                account_sid=s.twilio_account_sid,
                auth_token=s.twilio_auth_token,
                default_from=s.sms_from,
            )
        ]
    )
    return ProviderSettings(
        entries=entries,
        timeout_seconds=s.provider_timeout_seconds,
        max_connections=s.sender_concurrency,
        breaker_failure_threshold=s.breaker_failure_threshold,
        breaker_reset_seconds=s.breaker_reset_seconds,
        pacing_rate_per_second=s.sms_rate_per_second,
        pacing_burst=s.sms_rate_burst,
        pacing_state_path=s.data_dir / "pacing.db",
        settings_name=(
            "PIGEON_SMS_PROVIDERS" if s.sms_providers.strip() else "PIGEON_SMS_PROVIDER_URL"
        ),
    )


def worker_names(settings: Settings) -> list[str]:
    """Every worker ``settings`` need: every consumer, and the relay with Kafka."""
    return [*CONSUMERS, RELAY] if settings.uses_kafka else list(CONSUMERS)


def kafka_doorbell(settings: Settings) -> PostgresDoorbell | None:
    """How Kafka consumers are woken: through the PostgreSQL store's server, if any."""
    if not settings.kafka_doorbell or settings.database.dialect != "postgresql":
        return None
    return PostgresDoorbell(settings.database.psycopg_conninfo())


def build(settings: Settings) -> Pigeon:
    """Wire Pigeon from ``settings`` without connecting to anything yet."""
    provider_settings(settings)  # a bad provider list fails here, before anything starts
    database = settings.database
    on_commit: list[Callable[[], None]] = []

    def committed() -> None:
        for wake in on_commit:
            wake()

    if settings.uses_kafka:
        kafka = bus_from_url(
            settings.bus_url,
            partitions=settings.kafka_partitions or settings.bus_partitions,
            replication_factor=settings.kafka_replication_factor,
            idempotence=settings.kafka_idempotence,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            awake_fetch_wait_ms=settings.kafka_awake_fetch_wait_ms,
            doorbell=kafka_doorbell(settings),
        )
        assert isinstance(kafka, KafkaEventBus)
        store = SqlStore(
            database,
            outbox=True,
            synchronous=settings.sqlite_synchronous,
            on_commit=committed,
            auto_migrate=settings.auto_migrate,
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )
        return Pigeon(settings=settings, bus=kafka, store=store, _on_commit=on_commit)
    if database.dialect != "sqlite":
        raise ConfigurationError(
            "PIGEON_BUS_URL",
            "a PostgreSQL store needs Kafka as the bus (PIGEON_BUS_URL=kafka://host:9092); "
            "the embedded bus lives inside the SQLite store's file",
        )
    if settings.bus_path.resolve() != settings.database_path.resolve():
        raise ConfigurationError(
            "PIGEON_BUS_URL",
            "the embedded SQLite bus must use the same file as PIGEON_DATABASE_URL "
            "(the event row is written in the same transaction as the notification)",
        )
    bus = SqliteEventBus(
        settings.bus_path,
        default_partitions=settings.bus_partitions,
        lease_seconds=settings.bus_lease_seconds,
        poll_interval=settings.bus_poll_interval_ms / 1000,
        synchronous=settings.sqlite_synchronous,
        readers=READERS,
    )
    # a commit rings the consumers of the topics it wrote to, no others
    on_commit.append(bus.wake_committed)
    partitions: dict[str, int] = {}
    store = SqlStore(
        database,
        partitions=partitions,
        default_partitions=settings.bus_partitions,
        synchronous=settings.sqlite_synchronous,
        on_commit=committed,
        on_topics=bus.committed_topics,
        auto_migrate=settings.auto_migrate,
        idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        intake=True,
    )
    return Pigeon(
        settings=settings, bus=bus, store=store, partitions=partitions, _on_commit=on_commit
    )


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence ``logger_name`` below CRITICAL for the block."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
