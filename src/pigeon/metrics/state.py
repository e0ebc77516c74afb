"""Gauges of the whole deployment, measured when ``/metrics`` is scraped.

Consumer lag, dead letters waiting and the outbox describe shared state (the
log, the store), not one process: the process that serves ``/metrics`` reads
them from the bus and the database at scrape time, with reads of their own,
so nothing is counted per message and a worker that is down still shows its
growing lag. A part that cannot be read (Kafka unreachable) is left out of
that scrape and logged; the rest is still served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from pigeon.metrics.lag import PartitionLag
from pigeon.store.schema import dead_letters, outbox

log = logging.getLogger(__name__)

#: measures the lag of every subscription
LagProbe = Callable[[], Awaitable[list[PartitionLag]]]
#: runs a function on a reader connection of the store
StoreRead = Callable[[Callable[[Connection], "StoreBacklog"]], Awaitable["StoreBacklog"]]


@dataclass(frozen=True, slots=True)
class StoreBacklog:
    """What waits in the store: dead letters not replayed, outbox rows not published."""

    dead_letters_waiting: int
    #: ``None`` without an outbox (the embedded bus)
    outbox_rows: int | None = None
    #: age of the oldest unpublished outbox row (the relay's lag); 0 when none waits
    outbox_oldest_age_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class State:
    """One measurement; a part that could not be read is ``None``."""

    lags: list[PartitionLag] | None = None
    backlog: StoreBacklog | None = None
    errors: list[str] = field(default_factory=list)


def read_backlog(conn: Connection, *, with_outbox: bool) -> StoreBacklog:
    """Count what waits in the store (a reader connection's synchronous side)."""
    dead = conn.execute(
        select(func.count()).select_from(dead_letters).where(dead_letters.c.replayed_at.is_(None))
    ).scalar_one()
    if not with_outbox:
        return StoreBacklog(int(dead))
    rows, oldest = conn.execute(select(func.count(), func.min(outbox.c.created_at))).one()
    age = 0.0
    if oldest is not None:
        moment = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        age = max(0.0, (datetime.now(UTC) - moment).total_seconds())
    return StoreBacklog(int(dead), int(rows), age)


class StateProbe:
    """Measures lag and the store's backlog; ``lag`` or ``store_read`` may be absent."""

    def __init__(
        self,
        *,
        lag: LagProbe | None,
        store_read: StoreRead | None,
        with_outbox: bool,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._lag = lag
        self._store_read = store_read
        self._with_outbox = with_outbox
        self._close = close

    async def measure(self) -> State:
        """Both parts at once; a part that fails is left out and its error kept."""
        errors: list[str] = []
        lags, backlog = await asyncio.gather(self._measure_lag(errors), self._backlog(errors))
        return State(lags, backlog, errors)

    async def lag(self) -> list[PartitionLag]:
        """The lag of every group, topic and partition, measured now (raises if it cannot be
        read; empty where nothing measures it)."""
        return await self._lag() if self._lag is not None else []

    async def _measure_lag(self, errors: list[str]) -> list[PartitionLag] | None:
        if self._lag is None:
            return None
        try:
            return await self._lag()
        except Exception as exc:  # a scrape must still answer: leave lag out
            errors.append(f"consumer lag: {type(exc).__name__}: {exc}")
            log.warning("could not measure consumer lag", extra={"error": str(exc)})
            return None

    async def _backlog(self, errors: list[str]) -> StoreBacklog | None:
        if self._store_read is None:
            return None
        with_outbox = self._with_outbox
        try:
            return await self._store_read(lambda conn: read_backlog(conn, with_outbox=with_outbox))
        except Exception as exc:  # the store is down: leave the backlog out
            errors.append(f"store backlog: {type(exc).__name__}: {exc}")
            log.warning("could not read the store's backlog", extra={"error": str(exc)})
            return None

    async def close(self) -> None:
        """Close what the lag measurement opened (a Kafka offsets client)."""
        if self._close is not None:
            await self._close()


def state_families(state: State) -> Iterator[Metric]:
    """The gauges of ``state``, as Prometheus families."""
    if state.lags is not None:
        lag = GaugeMetricFamily(
            "pigeon_consumer_lag_messages",
            "Messages a consumer group has not read yet: the log's end minus the group's "
            "committed position, per topic and partition (retry topics: retries waiting).",
            labels=("group", "topic", "partition"),
        )
        for item in state.lags:
            lag.add_metric((item.group, item.topic, str(item.partition)), item.lag)
        yield lag
    backlog = state.backlog
    if backlog is not None:
        yield GaugeMetricFamily(
            "pigeon_dead_letters_waiting",
            "Dead letters recorded and not replayed yet.",
            value=backlog.dead_letters_waiting,
        )
        if backlog.outbox_rows is not None:
            yield GaugeMetricFamily(
                "pigeon_outbox_rows_waiting",
                "Outbox rows not yet published to Kafka by the relay.",
                value=backlog.outbox_rows,
            )
        if backlog.outbox_oldest_age_seconds is not None:
            yield GaugeMetricFamily(
                "pigeon_outbox_oldest_age_seconds",
                "Age of the oldest unpublished outbox row: how far the relay is behind.",
                value=backlog.outbox_oldest_age_seconds,
            )
