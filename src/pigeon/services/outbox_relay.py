"""The outbox relay: publishes events the store wrote to its outbox, then forgets them.

With Kafka as the bus, the API and the workers write each event into the
store's ``outbox`` table in the same transaction as the state it describes.
This loop sends those rows to Kafka in the order they were written (the
producer keeps per-partition order, ``acks=all``), waits until the broker
has acknowledged every one, and only then deletes them (on PostgreSQL one
``DELETE ... RETURNING`` reads them, in a transaction committed after the
acknowledgement). A relay killed between the two steps leaves the rows in
place: the next relay publishes them again - a duplicate, which consumers
drop by event id - and never loses or reorders them.

Several relays may run (one per ``pigeon run``/``pigeon worker outbox-relay``):
one holds the leadership (see :mod:`pigeon.store.outbox`), the rest stand by
and take over within ``standby_interval`` when it dies.

Under a steady stream the relay claims at most once per ``linger``
(``PIGEON_RELAY_LINGER_MS``, 20 ms).
Every accept, sender commit and callback used to wake it for a claim, a
publish, a doorbell ring and an empty claim of its own: at 50 SMS/s the stack
ran 26 PostgreSQL transactions per SMS (16 with the linger) and the relay used
35 % of a core (15 %). After a quiet spell the first row is claimed as soon
as its commit's ``NOTIFY`` arrives.

When idle it claims again only every ``idle_wait`` (5 s) without a wake-up:
on PostgreSQL every commit that writes the outbox sends a ``NOTIFY``, which the
leader's connection hears, so the timer is a safety net, not the way rows are
found (a 1 s timer was a tenth of an idle ``pigeon run``'s CPU on Kafka); on
SQLite the file leadership looks at its own, shorter poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pigeon import tracing
from pigeon.bus.kafka import KafkaEventBus
from pigeon.bus.kafka_wire import OutRecord
from pigeon.bus.partitioning import partition_for
from pigeon.errors import PigeonError
from pigeon.store.sql_store import SqlStore

log = logging.getLogger(__name__)


class OutboxRelay:
    """Moves outbox rows to Kafka; run it with :meth:`run`, stop it with :meth:`request_stop`."""

    def __init__(
        self,
        store: SqlStore,
        bus: KafkaEventBus,
        *,
        batch_size: int = 1000,
        linger: float = 0.02,
        idle_wait: float = 5.0,
        standby_interval: float = 1.0,
        error_backoff: float = 1.0,
    ) -> None:
        self._bus = bus
        self._batch_size = batch_size
        self._linger = linger
        self._idle_wait = idle_wait
        self._standby_interval = standby_interval
        self._error_backoff = error_backoff
        self._leadership = store.relay_leadership()
        self._stopping = asyncio.Event()
        self.published = 0
        self.is_leader = False
        #: attempts to become active that found another relay active (tests, health)
        self.refused = 0

    def wake(self) -> None:
        """Rows were committed in this process: look now rather than at the next poll."""
        self._leadership.wake()

    def request_stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self._stopping.set()
        self._leadership.wake()

    async def run(self) -> None:
        """Relay until stopped; outages are logged and retried, never fatal."""
        try:
            while not self._stopping.is_set():
                try:
                    if not await self._leadership.acquire():
                        self.refused += 1
                        await self._pause(self._standby_interval)
                        continue
                    self.is_leader = True
                    log.info("outbox relay: active")
                    await self._relay()
                except PigeonError as exc:
                    log.warning("outbox relay: %s; retrying in %.1fs", exc, self._error_backoff)
                    await self._leadership.release()
                    self.is_leader = False
                    await self._pause(self._error_backoff)
        finally:
            self.is_leader = False
            await self._leadership.release()

    async def _relay(self) -> None:
        while not self._stopping.is_set():
            # the rows are deleted when the block ends, i.e. once Kafka has them all; a
            # claim is made only while this relay leads (on PostgreSQL: on the session
            # that holds the lock, so a standby cannot have taken over meanwhile)
            async with self._leadership.claim(self._batch_size) as rows:
                if rows:
                    records = [
                        OutRecord(
                            row.topic,
                            partition_for(row.key, await self._bus.partitions(row.topic)),
                            row.key,
                            row.value,
                            row.headers,
                        )
                        for row in rows
                    ]
                    if tracing.ENABLED:  # a "publish" span per traced row
                        await tracing.traced_publish(self._bus.produce, records)
                    else:
                        await self._bus.produce(records)
            if not rows:
                await self._leadership.wait(self._idle_wait)
                continue
            self.published += len(rows)
            if len(rows) < self._batch_size:
                # a steady stream, not a backlog: let the next rows gather for a linger
                # (one claim, produce and commit for several commits' rows, not one each);
                # the first row after a quiet spell is claimed at once
                await self._pause(self._linger)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
