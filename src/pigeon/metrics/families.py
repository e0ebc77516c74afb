"""Every metric Pigeon records in its processes, defined in one place.

The families are made once per process by :func:`pigeon.metrics.enable`, after
the value class is chosen (in-process, or files shared by ``pigeon run``'s
processes): a metric made before that could not be aggregated. Components bind
their label values once, when they are built, so recording a value costs one
method call and no label lookup (see :mod:`pigeon.metrics`). ``docs/metrics.md``
has the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: request and commit latencies: 0.5 ms to 10 s
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: messages or units of work per batch
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: how long pacing holds a message: 10 ms to 10 min
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)

#: values of pigeon_circuit_breaker_state
BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


@dataclass(frozen=True)
class Families:
    """The metric families of one process."""

    http_request_seconds: Histogram
    notifications: Counter
    consumer_batch_size: Histogram
    consumer_handler_seconds: Histogram
    consumer_messages: Counter
    provider_send_seconds: Histogram
    provider_sends: Counter
    breaker_state: Gauge
    pacing_wait_seconds: Histogram
    store_commit_seconds: Histogram
    store_commit_units: Histogram


def make_families(registry: CollectorRegistry | None) -> Families:
    """Define every family, registered in ``registry`` (``None`` in multiprocess mode,
    where the collector reads the processes' files instead)."""
    return Families(
        http_request_seconds=Histogram(
            "pigeon_http_request_duration_seconds",
            "HTTP requests by route template and status, and how long they took to answer.",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        notifications=Counter(
            "pigeon_notifications_total",
            "Notifications accepted, and those that reached a final status, by channel.",
            ("channel", "status"),
            registry=registry,
        ),
        consumer_batch_size=Histogram(
            "pigeon_consumer_batch_size_messages",
            "Messages per batch handed to a consumer group's handler.",
            ("group", "topic"),
            buckets=SIZE_BUCKETS,
            registry=registry,
        ),
        consumer_handler_seconds=Histogram(
            "pigeon_consumer_handler_duration_seconds",
            "How long a consumer group's handler took over one batch.",
            ("group", "topic"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        consumer_messages=Counter(
            "pigeon_consumer_messages_total",
            "Messages handled by a consumer group, by outcome: ack, retry (a retry "
            "scheduled) or dead_letter.",
            ("group", "topic", "outcome"),
            registry=registry,
        ),
        provider_send_seconds=Histogram(
            "pigeon_provider_send_duration_seconds",
            "How long an SMS provider took to answer a send (the HTTP call; pacing apart).",
            ("provider",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        provider_sends=Counter(
            "pigeon_provider_sends_total",
            "Sends offered to each provider, by outcome: accepted, the error class "
            "(ProviderUnavailable, ProviderRateLimited, ProviderOutcomeUnknown, "
            "ProviderRejected, ...), or circuit_open when its breaker skipped it.",
            ("provider", "outcome"),
            registry=registry,
        ),
        breaker_state=Gauge(
            "pigeon_circuit_breaker_state",
            "A provider's circuit breaker: 0 closed, 1 half-open, 2 open "
            "(the worst of the live sender processes).",
            ("provider",),
            registry=registry,
            multiprocess_mode="livemax",
        ),
        pacing_wait_seconds=Histogram(
            "pigeon_pacing_wait_seconds",
            "How long pacing held a message back before its send (only sends that waited).",
            ("provider",),
            buckets=WAIT_BUCKETS,
            registry=registry,
        ),
        store_commit_seconds=Histogram(
            "pigeon_store_commit_duration_seconds",
            "How long one group commit of the store took (its transaction and commit).",
            ("committer",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        store_commit_units=Histogram(
            "pigeon_store_group_commit_size_units",
            "Callers' units of work that shared one store commit.",
            ("committer",),
            buckets=SIZE_BUCKETS,
            registry=registry,
        ),
    )
