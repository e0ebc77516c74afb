"""The few numbers an operator looks at first, read from metric families.

:class:`Snapshot` is what ``pigeon status`` prints and what the console shows:
lag per group and partition, breaker states, dead letters waiting, the outbox,
and the last minute's rates. :func:`snapshot` reads it from families, either
live (the serving process's own) or parsed from a scrape of ``/metrics``.

The last minute's rates come from the serving process: each time it renders
``/metrics`` it keeps the totals of a few counters, and publishes the rate
since the sample taken about a minute before (``pigeon_last_minute_*``), so a
status needs no Prometheus server and no waiting when something scrapes
regularly; a first scrape has no earlier sample and shows a window of 0.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric

from pigeon.metrics.families import BREAKER_VALUES
from pigeon.metrics.lag import PartitionLag

#: how far back the rates look
WINDOW_SECONDS = 60.0
#: the counters behind each rate: (sample name, label, the label's values that count:
#: ``*`` any, ``!x`` any but x)
RATES: dict[str, tuple[str, str, frozenset[str]]] = {
    "accepted": ("pigeon_notifications_total", "status", frozenset({"accepted"})),
    "delivered": ("pigeon_notifications_total", "status", frozenset({"delivered"})),
    "failed": ("pigeon_notifications_total", "status", frozenset({"failed", "undelivered"})),
    "retries": ("pigeon_consumer_messages_total", "outcome", frozenset({"retry"})),
    "dead_letters": ("pigeon_consumer_messages_total", "outcome", frozenset({"dead_letter"})),
    "provider_sends": ("pigeon_provider_sends_total", "outcome", frozenset({"*"})),
    "provider_errors": ("pigeon_provider_sends_total", "outcome", frozenset({"!accepted"})),
    "http_requests": ("pigeon_http_request_duration_seconds_count", "status", frozenset({"*"})),
}
_STATES = {value: name for name, value in BREAKER_VALUES.items()}


def _matches(value: str, wanted: frozenset[str]) -> bool:
    if "*" in wanted:
        return True
    negated = [w[1:] for w in wanted if w.startswith("!")]
    if negated:
        return value not in negated
    return value in wanted


def totals(families: Iterable[Metric]) -> dict[str, float]:
    """The current totals behind each of :data:`RATES`."""
    sums = dict.fromkeys(RATES, 0.0)
    by_sample: dict[str, list[tuple[str, str, frozenset[str]]]] = {}
    for what, (sample, label, wanted) in RATES.items():
        by_sample.setdefault(sample, []).append((what, label, wanted))
    for family in families:
        for s in family.samples:
            for what, label, wanted in by_sample.get(s.name, ()):
                if _matches(s.labels.get(label, ""), wanted):
                    sums[what] += s.value
    return sums


class RecentRates:
    """Rates over about the last minute, from the totals of successive renders."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, dict[str, float]]] = deque()

    def families(self, current: dict[str, float], now: float | None = None) -> list[Metric]:
        """Record ``current`` totals; the rates since the sample nearest a minute ago."""
        moment = time.monotonic() if now is None else now
        while len(self._samples) > 1 and self._samples[1][0] <= moment - WINDOW_SECONDS:
            self._samples.popleft()  # keep one sample at or before the window's start
        base_time, base = self._samples[0] if self._samples else (moment, current)
        window = moment - base_time
        self._samples.append((moment, current))
        rate = GaugeMetricFamily(
            "pigeon_last_minute_per_second",
            "Rates over about the last minute, for 'pigeon status' (Prometheus: use rate() "
            "of the counters instead).",
            labels=("what",),
        )
        for what, value in current.items():
            delta = max(0.0, value - base.get(what, 0.0))
            rate.add_metric((what,), delta / window if window > 0 else 0.0)
        span = GaugeMetricFamily(
            "pigeon_last_minute_window_seconds",
            "The time the last-minute rates cover (0: no earlier scrape to compare with).",
            value=window,
        )
        return [rate, span]


@dataclass(frozen=True)
class Snapshot:
    """The state an operator looks at first (``None``: not in the metrics)."""

    lags: list[PartitionLag] = field(default_factory=list)
    #: provider -> closed, half_open or open
    breakers: dict[str, str] = field(default_factory=dict)
    dead_letters_waiting: int | None = None
    outbox_rows: int | None = None
    outbox_oldest_age_seconds: float | None = None
    #: per second over :attr:`window_seconds`, by name (see :data:`RATES`)
    rates: dict[str, float] = field(default_factory=dict)
    window_seconds: float = 0.0

    def group_lag(self) -> dict[str, int]:
        """Total lag per consumer group."""
        lag: dict[str, int] = {}
        for item in self.lags:
            lag[item.group] = lag.get(item.group, 0) + item.lag
        return lag


def snapshot(families: Iterable[Metric]) -> Snapshot:
    """Read a :class:`Snapshot` from metric families (live, or parsed from text)."""
    lags: list[PartitionLag] = []
    breakers: dict[str, str] = {}
    rates: dict[str, float] = {}
    single: dict[str, float] = {}
    for family in families:
        for s in family.samples:
            if s.name == "pigeon_consumer_lag_messages":
                labels = s.labels
                partition = int(labels["partition"])
                lags.append(PartitionLag(labels["group"], labels["topic"], partition, int(s.value)))
            elif s.name == "pigeon_circuit_breaker_state":
                breakers[s.labels["provider"]] = _STATES.get(s.value, str(s.value))
            elif s.name == "pigeon_last_minute_per_second":
                rates[s.labels["what"]] = s.value
            elif s.name in _SINGLE:
                single[s.name] = s.value
    dead = single.get("pigeon_dead_letters_waiting")
    rows = single.get("pigeon_outbox_rows_waiting")
    return Snapshot(
        lags=sorted(lags, key=lambda x: (x.group, x.topic, x.partition)),
        breakers=dict(sorted(breakers.items())),
        dead_letters_waiting=int(dead) if dead is not None else None,
        outbox_rows=int(rows) if rows is not None else None,
        outbox_oldest_age_seconds=single.get("pigeon_outbox_oldest_age_seconds"),
        rates=rates,
        window_seconds=single.get("pigeon_last_minute_window_seconds", 0.0),
    )


_SINGLE = frozenset(
    {
        "pigeon_dead_letters_waiting",
        "pigeon_outbox_rows_waiting",
        "pigeon_outbox_oldest_age_seconds",
        "pigeon_last_minute_window_seconds",
    }
)
