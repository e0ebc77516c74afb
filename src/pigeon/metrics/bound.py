"""Metrics bound to one component's labels when it is built, so recording needs no lookup."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from pigeon.bus.port import Ack, DeadLetter, Outcome
from pigeon.metrics.families import BREAKER_VALUES, Families


class ConsumerMetrics:
    """One consumer runner's: batch sizes, handler time, outcomes."""

    __slots__ = ("_acked", "_batch_size", "_dead", "_handler_seconds", "_retried")

    def __init__(self, families: Families, group: str, topic: str) -> None:
        self._batch_size = families.consumer_batch_size.labels(group, topic)
        self._handler_seconds = families.consumer_handler_seconds.labels(group, topic)
        self._acked = families.consumer_messages.labels(group, topic, "ack")
        self._retried = families.consumer_messages.labels(group, topic, "retry")
        self._dead = families.consumer_messages.labels(group, topic, "dead_letter")

    def handled(self, started: float, outcomes: Sequence[Outcome]) -> None:
        """A batch was handled: it began at ``started`` (``time.perf_counter()``)."""
        self._handler_seconds.observe(time.perf_counter() - started)
        self._batch_size.observe(len(outcomes))
        retried = dead = 0
        for outcome in outcomes:
            if not isinstance(outcome, Ack):
                if isinstance(outcome, DeadLetter):
                    dead += 1
                else:
                    retried += 1
        if retried:
            self._retried.inc(retried)
        if dead:
            self._dead.inc(dead)
        if len(outcomes) > retried + dead:
            self._acked.inc(len(outcomes) - retried - dead)


class ProviderMetrics:
    """One SMS provider's: send latency, outcomes, breaker state, pacing waits."""

    __slots__ = ("_breaker", "_name", "_outcomes", "accepted", "latency", "pacing_wait")

    def __init__(self, families: Families, name: str) -> None:
        self._name = name
        self._outcomes = families.provider_sends
        self.latency = families.provider_send_seconds.labels(name)
        self.pacing_wait = families.pacing_wait_seconds.labels(name)
        self.accepted = families.provider_sends.labels(name, "accepted")
        self._breaker = families.breaker_state.labels(name)

    def failed(self, error: BaseException) -> None:
        """A send ended in ``error`` (labelled by its class; only on the failure path)."""
        self._outcomes.labels(self._name, type(error).__name__).inc()

    def skipped(self) -> None:
        """The provider's open circuit skipped it."""
        self._outcomes.labels(self._name, "circuit_open").inc()

    def breaker(self, state: str) -> None:
        """The provider's breaker is now in ``state`` (closed, half_open, open)."""
        self._breaker.set(BREAKER_VALUES[state])


class CommitMetrics:
    """One group committer's: commit time and units per commit."""

    __slots__ = ("_seconds", "_units")

    def __init__(self, families: Families, name: str) -> None:
        self._seconds = families.store_commit_seconds.labels(name)
        self._units = families.store_commit_units.labels(name)

    def committed(self, started: float, units: int) -> None:
        """A commit of ``units`` callers' work, begun at ``started``, succeeded."""
        self._seconds.observe(time.perf_counter() - started)
        self._units.observe(units)


class NotificationMetrics:
    """Notifications accepted and finished, of one channel."""

    __slots__ = ("_by_status", "accepted")

    def __init__(self, families: Families, channel: str) -> None:
        self.accepted = families.notifications.labels(channel, "accepted")
        self._by_status = {
            status: families.notifications.labels(channel, status)
            for status in ("delivered", "undelivered", "failed", "canceled")
        }

    def finished(self, statuses: Iterable[str]) -> None:
        """Notifications reached these final statuses (in a committed transaction)."""
        for status in statuses:
            counter = self._by_status.get(status)
            if counter is not None:
                counter.inc()
