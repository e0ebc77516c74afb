"""Retention: the cost of the store and the log does not grow with history.

One pass every ``interval_seconds`` (the first right after start), run by each
status-projector worker, on either stack. A pass deletes, chunk by chunk (each
chunk one short transaction, with a pause after it so other writers get the
lock), until nothing more is due:

- the embedded event log's rows every group has read, ``log_retention`` after
  they were written (on Kafka the topics' own ``retention.ms`` does this);
- records of processed events, once the event is older than ``log_retention``
  plus :data:`DEDUPE_MARGIN`. Assumption: an event is delivered again only
  while it is in the log, so on Kafka ``log_retention`` must cover the topics'
  ``retention.ms``. The embedded log says itself how old its oldest event that
  some group may still be given is (:meth:`LogCompactor.redelivery_horizon`),
  so a group that lags, however far, keeps the records it may still need;
- status callbacks kept for a message id nobody recorded, after the same window
  (the status poller asks the provider about a notification left ``sent``);
- idempotency keys past their TTL;
- final notifications, with their timeline and attempts, ``notification_retention``
  after their last change (None: kept forever).

Several workers running passes at once is harmless: they delete disjoint rows
or find them gone. Usage counts and dead letters are never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pigeon.domain.events import utcnow
from pigeon.services.periodic import Periodic

log = logging.getLogger(__name__)

#: kept beyond the log's retention: clocks of other machines, an outbox relay that lagged
DEDUPE_MARGIN = timedelta(hours=1)
#: a notification takes its timeline (about five steps) and its attempts along
ROWS_PER_NOTIFICATION = 8


class RetentionStore(Protocol):
    """What retention needs of the store: bounded deletes, each one transaction."""

    async def purge_processed_events(self, *, before: datetime, limit: int) -> int:
        """Forget up to ``limit`` processed event ids of events created before ``before``."""
        ...

    async def purge_pending_callbacks(self, *, before: datetime, limit: int) -> int:
        """Drop up to ``limit`` unclaimed status callbacks received before ``before``."""
        ...

    async def purge_idempotency_keys(self, *, now: datetime, limit: int) -> int:
        """Drop up to ``limit`` idempotency keys past their TTL at ``now``."""
        ...

    async def purge_notifications(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` final notifications last changed before ``before``,
        with their timeline and attempts."""
        ...


class LogCompactor(Protocol):
    """An event log that Pigeon itself keeps (the embedded bus) and must compact."""

    async def compact_log(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` rows every group has read, written before ``before``."""
        ...

    async def redelivery_horizon(self) -> datetime | None:
        """When the oldest row some group may still be given was written, if any."""
        ...


@dataclass(frozen=True)
class RetentionPolicy:
    """How long things are kept, and how a pass paces itself."""

    log_retention: timedelta = timedelta(hours=24)
    #: None keeps notifications forever
    notification_retention: timedelta | None = timedelta(days=30)
    interval_seconds: float = 300.0
    chunk_rows: int = 1000
    #: after each chunk: other writers take the lock meanwhile
    pause_seconds: float = 0.02


class Retention(Periodic):
    """Runs until :meth:`request_stop`; one pass every ``policy.interval_seconds``."""

    WHAT = "retention pass"
    CATCH_ALL = True  # housekeeping must not take the projector down with it

    def __init__(
        self,
        store: RetentionStore,
        log_compactor: LogCompactor | None,
        policy: RetentionPolicy,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(policy.interval_seconds)
        self._store = store
        self._log = log_compactor
        self._policy = policy
        self._clock = clock
        #: completed passes (tests wait on it)
        self.passes = 0

    async def sweep(self) -> dict[str, int]:
        """One pass; returns how many rows went per table (notifications: how many)."""
        started = time.monotonic()
        now = self._clock()
        policy = self._policy
        dedupe_before = now - policy.log_retention - DEDUPE_MARGIN
        rows = policy.chunk_rows
        steps: list[tuple[str, int, Callable[[int], Awaitable[int]]]] = []
        if self._log is not None:
            compactor, log_before = self._log, now - policy.log_retention
            steps.append(
                ("bus_log", rows, lambda n: compactor.compact_log(before=log_before, limit=n))
            )
            horizon = await compactor.redelivery_horizon()
            if horizon is not None:
                dedupe_before = min(dedupe_before, horizon - DEDUPE_MARGIN)
        store = self._store
        callbacks_before = now - policy.log_retention - DEDUPE_MARGIN
        steps += [
            (
                "processed_events",
                rows,
                lambda n: store.purge_processed_events(before=dedupe_before, limit=n),
            ),
            (
                "pending_callbacks",
                rows,
                lambda n: store.purge_pending_callbacks(before=callbacks_before, limit=n),
            ),
            ("idempotency_keys", rows, lambda n: store.purge_idempotency_keys(now=now, limit=n)),
        ]
        if policy.notification_retention is not None:
            kept_until = now - policy.notification_retention
            steps.append(
                (
                    "notifications",
                    max(1, rows // ROWS_PER_NOTIFICATION),
                    lambda n: store.purge_notifications(before=kept_until, limit=n),
                )
            )
        counts: dict[str, int] = {}
        for table, limit, chunk in steps:
            counts[table] = await self._drain(chunk, limit)
            if self._stopping.is_set():
                break
        self.passes += 1
        if any(counts.values()):
            log.info(
                "retention pass deleted %s in %.1f s",
                ", ".join(f"{table}={n}" for table, n in counts.items() if n),
                time.monotonic() - started,
            )
        return counts

    async def _drain(self, chunk: Callable[[int], Awaitable[int]], limit: int) -> int:
        """Chunks until one comes back short (nothing more is due) or the worker stops."""
        total = 0
        while True:
            deleted = await chunk(limit)
            total += deleted
            if deleted < limit:
                return total
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._policy.pause_seconds)
            if self._stopping.is_set():
                return total


class StatisticsStore(Protocol):
    """A store whose query plans depend on table statistics it keeps itself."""

    async def refresh_statistics(self) -> list[str]:
        """Bring stale table statistics up to date; the tables refreshed."""
        ...


class PlannerStatistics(Periodic):
    """Keeps the store's planner statistics fresh as its tables grow (PostgreSQL).

    Run beside :class:`Retention` by each status-projector worker; a pass is one
    catalog query, plus an ``ANALYZE`` of the tables that changed by more than
    autovacuum's threshold since their last one (see
    :mod:`pigeon.store.planner_statistics` for why Pigeon does not leave this to
    the server).
    """

    WHAT = "planner statistics refresh"
    CATCH_ALL = True

    #: between passes: a young table's plans improve within seconds of it growing
    INTERVAL_SECONDS = 2.0

    def __init__(self, store: StatisticsStore, interval: float = INTERVAL_SECONDS) -> None:
        super().__init__(interval)
        self._store = store
        #: completed passes (tests wait on it)
        self.passes = 0

    async def sweep(self) -> list[str]:
        tables = await self._store.refresh_statistics()
        self.passes += 1
        if tables:
            log.debug("analyzed %s", ", ".join(tables))
        return tables
