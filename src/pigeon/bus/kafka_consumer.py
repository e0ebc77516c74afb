"""A consumer-group member of the Kafka event bus (see :mod:`pigeon.bus.kafka`).

Each member subscribes to its topic *and* its group's retry topic
(``<topic>.retry.<group>``, same partition count), with the range assignor so
partition N of both lands on the same member. Partition N of the two is one
*slot*: a :class:`~pigeon.bus.port.Batch` of slot N holds the due retries of
retry partition N followed by new messages of partition N.

* **One batch per slot**: a slot handed out is paused until its batch is
  settled, so Kafka stops fetching it and no second batch overtakes the first.
* **Settle = effects, then commit**: retry-later and dead-letter records are
  produced and acknowledged first; only then is ``offset + 1`` committed for
  the slot's partitions. A crash in between redelivers (at least once).
* **Retry without blocking**: a retry record not yet due is sought back to and
  only its retry partition is paused until its ``not-before`` time; the main
  partition flows on. A retry topic is a FIFO, so a long delay can hold up a
  shorter one queued behind it - never makes a retry early.
* **Dozing** (with a doorbell, see :mod:`pigeon.bus.kafka_doorbell`): a member
  that found nothing for a few fetches pauses every partition and waits for a
  ring, a due retry or its fallback timer, then fetches again with short waits;
  :attr:`KafkaConsumer.wakes` counts which of them ended each doze.
* **Rebalances**: when partitions are revoked, the member waits (a bounded
  time) for the batches it handed out to settle so their commits land; a batch
  still open after that is forgotten and its messages are delivered again to
  whoever owns the partition next. A commit refused because the group moved
  on is logged, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pigeon.bus.kafka_batches import Destinations, assemble, offsets_in, outcome_records
from pigeon.bus.kafka_wire import bus_error, describe, retry_topic_for
from pigeon.bus.port import Batch, Outcome
from pigeon.bus.wakes import Wakes
from pigeon.errors import BusError, BusUnavailable

#: a long fetch waits in slices this long, so that a stopping runner is heard
FETCH_SLICE_SECONDS = 0.5
#: a dozing member fetches this often even without a ring (a lost ring costs this much:
#: rings are lost only while a publisher cannot reach PostgreSQL)
DOZE_FALLBACK_SECONDS = 5.0
#: aiokafka's background fetcher wakes at least this often: awake (a stall after a
#: resume lasts up to one tick), and dozing (nothing to fetch: only its idle cost)
AWAKE_TICK_SECONDS = 0.2
DOZING_TICK_SECONDS = 1.0
#: awake, a member dozes after finding nothing for this long (several fetches' worth)
MIN_IDLE_SECONDS = 0.05

if TYPE_CHECKING:
    from pigeon.bus.kafka import KafkaConsumerSettings, KafkaEventBus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Joined:
    aiokafka: ModuleType
    client: Any  # aiokafka.AIOKafkaConsumer (untyped library)
    destinations: Destinations


class _NotJoined:
    """The member before ``start()`` / after ``stop()``."""


def _listener(aiokafka: ModuleType, member: KafkaConsumer) -> Any:
    """A rebalance listener forwarding to ``member`` (aiokafka insists on its base class)."""

    class Listener(aiokafka.ConsumerRebalanceListener):  # type: ignore[name-defined,misc]  # untyped base, imported lazily
        async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
            await member.on_revoked(revoked)

        async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
            member.on_assigned(assigned)

    return Listener()


class KafkaConsumer:
    """One member of a Kafka consumer group; fetches per-partition batches and settles them."""

    def __init__(
        self,
        bus: KafkaEventBus,
        topic: str,
        group: str,
        dead_letter_topic: str,
        settings: KafkaConsumerSettings,
        *,
        linger_seconds: float = 0.0,
    ) -> None:
        self.topic = topic
        self.group = group
        self.retry_topic = retry_topic_for(topic, group)
        self.dead_letter_topic = dead_letter_topic
        self._bus = bus
        self._settings = settings
        self._link: _Joined | _NotJoined = _NotJoined()
        #: slot -> the batch handed out and not settled yet
        self._in_flight: dict[int, Batch] = {}
        #: slot -> wall-clock time its retry partition's head is due
        self._retry_wait: dict[int, float] = {}
        self._rebalancing = False
        self._assigned = asyncio.Event()
        self._settled = asyncio.Event()
        self._stopping = False
        self._interrupted = False
        #: set by the doorbell (a message was published to our topics), by a new
        #: assignment and by interrupt(): a dozing member fetches again
        self._rung = asyncio.Event()
        self._dozing = False
        #: what ended each doze (a long-polling member, without a doorbell, never dozes)
        self.wakes = Wakes()
        #: (loop time) when this member last found messages or woke up; when it dozed off
        self._awake_since = 0.0
        self._dozing_since = 0.0
        #: with a doorbell: fetch at most once per linger under a steady stream
        self._linger_seconds = linger_seconds if bus.doorbell is not None else 0.0
        self._lingering = False
        self._last_full = False
        #: (loop time) when this member last handed out batches
        self._last_batch_at = 0.0
        #: offsets waiting for the next commit, and the settles waiting on it
        self._to_commit: dict[Any, int] = {}
        self._commit_waiters: list[asyncio.Future[None]] = []
        self._committer: asyncio.Task[None] | None = None

    @property
    def dozing(self) -> bool:
        """Whether this member fetches nothing until a ring (see the doorbell)."""
        return self._dozing

    def paused_all(self) -> bool:
        """Whether every assigned partition is paused (so none is being fetched)."""
        link = self._joined()
        assignment = link.client.assignment()
        return bool(assignment) and link.client.paused() == assignment

    def fetcher_tick(self) -> float | None:
        """How often aiokafka's background fetcher wakes now, in seconds (None: not
        joined, or an aiokafka without the setting; see :func:`_fetcher_tick`)."""
        fetcher = _tickable_fetcher(self._link.client) if isinstance(self._link, _Joined) else None
        return fetcher._fetcher_timeout if fetcher is not None else None

    def _joined(self) -> _Joined:
        if isinstance(self._link, _Joined):
            return self._link
        raise BusError("the Kafka consumer is not started: await consumer.start() first")

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        """Create the topics if needed, join the group and wait for a first assignment."""
        aiokafka = self._bus.aiokafka
        from aiokafka.coordinator.assignors.range import (  # type: ignore[import-untyped]  # no stubs
            RangePartitionAssignor,
        )

        partitions = await self._bus.partitions(self.topic)
        retry_partitions = await self._bus.partitions(self.retry_topic, partitions)
        dead_partitions = await self._bus.partitions(self.dead_letter_topic)
        s = self._settings
        client = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers.split(","),
            client_id=s.client_id,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group replays the history
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            fetch_max_wait_ms=(
                s.awake_fetch_wait_ms if self._bus.doorbell is not None else s.fetch_max_wait_ms
            ),
            # the background fetcher's tick (aiokafka's default): an awake member that
            # pauses and resumes partitions sometimes waits a whole tick for its next
            # fetch (at 1,000 ms delivery stalled 1.0-1.4 s every few seconds at 268
            # SMS/s); a dozing one ticks slower (see _fetcher_tick)
            consumer_timeout_ms=int(AWAKE_TICK_SECONDS * 1000),
            request_timeout_ms=s.request_timeout_ms,
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        client.subscribe([self.topic, self.retry_topic], listener=_listener(aiokafka, self))
        self._stopping = False
        join_timeout = (s.request_timeout_ms + 2 * s.session_timeout_ms) / 1000
        try:
            await asyncio.wait_for(client.start(), join_timeout)  # returns once assigned
        except (aiokafka.errors.KafkaError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await client.stop()
            raise BusUnavailable(
                f"Kafka at {s.bootstrap_servers}: group {self.group!r} could not join "
                f"on {self.topic!r}: {describe(exc)}"
            ) from exc
        destinations = Destinations(
            self.group, self.retry_topic, retry_partitions, self.dead_letter_topic, dead_partitions
        )
        self._link = _Joined(aiokafka, client, destinations)
        self._dozing = False
        self._awake_since = asyncio.get_running_loop().time()
        if self._bus.doorbell is not None:
            await self._bus.doorbell.subscribe((self.topic, self.retry_topic), self._rung)

    async def stop(self) -> None:
        """Leave the group at once; unsettled batches are delivered again elsewhere."""
        self._stopping = True
        if self._bus.doorbell is not None:
            self._bus.doorbell.unsubscribe(self._rung)
        link, self._link = self._link, _NotJoined()
        self._in_flight.clear()
        self._settled.set()
        if isinstance(link, _Joined):
            try:
                await link.client.stop()
            except link.aiokafka.errors.KafkaError as exc:
                log.warning(
                    "leaving the group failed",
                    extra={"group": self.group, "topic": self.topic, "error": str(exc)},
                )

    # -- rebalancing (called by aiokafka's coordinator) -------------------
    async def on_revoked(self, revoked: Iterable[Any]) -> None:
        """Let open batches of revoked partitions settle (bounded), then forget the rest."""
        self._rebalancing = True
        self._assigned.clear()
        slots = {tp.partition for tp in revoked}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.drain_seconds
        while not self._stopping and slots & self._in_flight.keys():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._settled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), remaining)
        for slot in sorted(slots & self._in_flight.keys()):
            del self._in_flight[slot]
            self._redelivered(slot, "was revoked before its batch was settled")

    def on_assigned(self, assigned: Iterable[Any]) -> None:
        """Positions restart from the committed offsets, so due times are read afresh."""
        self._retry_wait.clear()
        self._rebalancing = False
        self._assigned.set()
        self._rung.set()  # new partitions may hold a backlog: look at once
        partitions = sorted((tp.topic, tp.partition) for tp in assigned)
        # kept as text, no fields: the benchmark harness reads this exact line
        # (benchmarks/harness/stacks.py, latest_assignment) to know a group has settled
        log.info("%s/%s: assigned %s", self.group, self.topic, partitions)

    def _redelivered(self, slot: int, why: str) -> None:
        log.warning(
            "partition %s; its messages will be delivered again",
            why,
            extra={"group": self.group, "topic": self.topic, "partition": slot},
        )

    # -- fetching ----------------------------------------------------------
    def interrupt(self) -> None:
        """End a waiting :meth:`fetch` within one slice of its long fetch."""
        self._interrupted = True
        self._rung.set()

    async def fetch(self, max_messages: int, wait_seconds: float) -> list[Batch]:
        """Wait up to ``wait_seconds`` for messages on this member's idle slots."""
        link = self._joined()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            remaining = deadline - loop.time()
            if self._rebalancing:  # getmany would block until the new assignment
                if remaining <= 0:
                    return []
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._assigned.wait(), remaining)
                continue
            if self._dozing:
                if not await self._doze(remaining):
                    return []  # the caller's wait is over (or it was interrupted)
                continue
            if await self._linger(link, remaining):
                if loop.time() >= deadline:
                    return []
                continue
            now = time.time()
            self._sync_pauses(link, now)
            if self._interrupted:
                return []
            try:
                records = await link.client.getmany(
                    timeout_ms=int(self._fetch_wait(remaining, now) * 1000),
                    max_records=max_messages,
                )
            except link.aiokafka.errors.KafkaError as exc:
                raise bus_error(exc, f"fetching {self.topic!r} for {self.group!r}") from exc
            batches = self._hand_out(link, records, time.time())
            if batches:
                self._awake_since = self._last_batch_at = loop.time()
                self._last_full = sum(len(b.messages) for b in batches) >= max_messages
                return batches
            self._maybe_doze(link, loop.time())
            if loop.time() >= deadline:
                return batches

    def _fetch_wait(self, remaining: float, now: float) -> float:
        """How long one ``getmany`` may wait for records."""
        # a long fetch in slices, so that a stopping runner is heard within one
        wait = min(max(0.0, remaining), FETCH_SLICE_SECONDS)
        if self._bus.doorbell is not None:  # back in time to doze when the window closes
            idle_left = self._awake_since + self._idle_seconds() - asyncio.get_running_loop().time()
            wait = min(wait, max(self._settings.awake_fetch_wait_ms / 1000, idle_left))
        if self._retry_wait:  # wake up when the next retry is due
            wait = min(wait, max(0.0, min(self._retry_wait.values()) - now) + 0.001)
        return wait

    async def _linger(self, link: _Joined, remaining: float) -> bool:
        """Under a steady stream, fetch at most once per linger; whether it lingered.

        A member fetching again right after each batch would take whatever
        arrived since, often one message, and pay a transaction and an offset
        commit for it. After a full batch (a backlog) or a quiet spell (the
        last batch is older than the linger) it fetches at once.
        """
        linger = self._last_batch_at + self._linger_seconds - asyncio.get_running_loop().time()
        if linger <= 0 or self._last_full or self._interrupted:
            return False
        self._lingering = True  # idle slots paused: nothing is fetched meanwhile
        self._sync_pauses(link, time.time())
        try:
            await asyncio.sleep(min(linger, max(0.0, remaining)))
        finally:
            self._lingering = False
        return True

    def _idle_seconds(self) -> float:
        """How long an awake member finds nothing before it dozes."""
        return max(MIN_IDLE_SECONDS, 4 * self._settings.awake_fetch_wait_ms / 1000)

    def _maybe_doze(self, link: _Joined, now: float) -> None:
        """Doze after finding nothing for a while, while the doorbell is heard."""
        doorbell = self._bus.doorbell
        if doorbell is None or not doorbell.listening or self._in_flight:
            return  # a batch in flight: its partition has more to fetch once it settles
        if now - self._awake_since < self._idle_seconds():
            return
        # not cleared here: a ring heard while awake (maybe after the fetch in flight
        # had started) ends the doze at once; _doze clears it when it wakes, and every
        # fetch from then on sees what was published before
        self._dozing = True
        self._dozing_since = now
        _fetcher_tick(link.client, DOZING_TICK_SECONDS)
        self._sync_pauses(link, time.time())

    async def _doze(self, remaining: float) -> bool:
        """Wait, fetching nothing, for a ring, a due retry or the fallback timer.

        True when the member should fetch again; False when ``remaining`` ran
        out first or the member was interrupted.
        """
        loop = asyncio.get_running_loop()
        fallback_at = self._dozing_since + DOZE_FALLBACK_SECONDS
        wait = min(max(0.0, fallback_at - loop.time()), max(0.0, remaining))
        if self._retry_wait:
            wait = min(wait, max(0.0, min(self._retry_wait.values()) - time.time()) + 0.001)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._rung.wait(), wait)
        rung, interrupted = self._rung.is_set(), self._interrupted
        due = bool(self._retry_wait) and min(self._retry_wait.values()) <= time.time()
        timer = loop.time() >= fallback_at
        if rung and interrupted:
            self.wakes.interrupted += 1
        elif rung:
            self.wakes.rung += 1
        elif due:
            self.wakes.due += 1
        elif timer:
            self.wakes.fallback += 1
        if interrupted or not (rung or due or timer):
            return False  # interrupted, or the caller's wait ran out: still dozing
        self._rung.clear()
        self._dozing = False
        if isinstance(self._link, _Joined):
            _fetcher_tick(self._link.client, AWAKE_TICK_SECONDS)
        self._awake_since = loop.time()
        if not (rung or due):  # the fallback: one look (two fetches' worth), then doze again
            self._awake_since -= (
                self._idle_seconds() - 2 * self._settings.awake_fetch_wait_ms / 1000
            )
        return True

    def _hand_out(self, link: _Joined, records: dict[Any, list[Any]], now: float) -> list[Batch]:
        for tp in [tp for tp in records if tp.partition in self._in_flight]:
            link.client.seek(tp, records.pop(tp)[0].offset)  # paused, so never; be safe
        fetched = assemble(records, self.topic, self.retry_topic, now)
        for tp, (offset, due) in fetched.not_due.items():
            link.client.seek(tp, offset)  # read it again when due
            self._retry_wait[tp.partition] = due
        for batch in fetched.batches:
            self._in_flight[batch.partition] = batch
        self._sync_pauses(link, now)
        return fetched.batches

    def _sync_pauses(self, link: _Joined, now: float) -> None:
        """Pause exactly the slots in flight and the retry partitions waiting for a due time."""
        for slot, due in list(self._retry_wait.items()):
            if due <= now:
                del self._retry_wait[slot]
        want = {
            tp
            for tp in link.client.assignment()
            if self._dozing
            or self._lingering
            or tp.partition in self._in_flight
            or (tp.topic == self.retry_topic and tp.partition in self._retry_wait)
        }
        paused = link.client.paused()
        if want - paused:
            link.client.pause(*(want - paused))
        if paused - want:
            link.client.resume(*(paused - want))

    # -- settling ----------------------------------------------------------
    async def settle(self, batch: Batch, outcomes: Sequence[Outcome]) -> None:
        """Produce retries and dead letters, wait for them, then commit the batch."""
        if len(outcomes) != len(batch.messages):
            raise ValueError(f"{len(outcomes)} outcomes for {len(batch.messages)} messages")
        slot = batch.partition
        if self._in_flight.get(slot) is not batch:
            self._redelivered(slot, "moved to another member before its batch was settled")
            return
        link = self._joined()
        errors = link.aiokafka.errors
        try:
            await self._bus.produce(outcome_records(batch, outcomes, link.destinations))
            if self._in_flight.get(slot) is batch:  # still ours after the await
                await self._commit(link, self._offsets(link, batch))
        except (errors.CommitFailedError, errors.IllegalStateError) as exc:
            self._redelivered(slot, f"could not commit after a rebalance ({describe(exc)})")
        except BusError:
            self._rewind(link, batch)
            raise
        except errors.KafkaError as exc:
            self._rewind(link, batch)
            raise bus_error(exc, f"committing {self.topic!r} for {self.group!r}") from exc
        finally:
            if self._in_flight.get(slot) is batch:
                del self._in_flight[slot]
            self._settled.set()
            self._awake_since = asyncio.get_running_loop().time()  # look again before dozing
            if isinstance(self._link, _Joined):
                self._sync_pauses(self._link, time.time())

    async def settle_many(self, settled: Sequence[tuple[Batch, Sequence[Outcome]]]) -> None:
        """Each batch on its own (each commits its partition's offsets), concurrently."""
        results = await asyncio.gather(
            *(self.settle(batch, outcomes) for batch, outcomes in settled),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _commit(self, link: _Joined, offsets: dict[Any, int]) -> None:
        """Commit ``offsets`` together with every other settle's waiting at the time.

        Settles that finish while a commit is on its way share the next one: one
        OffsetCommit request per round trip instead of one per partition batch. A
        slot has one batch in flight at a time, so a partition's offset only grows.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_commit.update(offsets)
        self._commit_waiters.append(waiter)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting(link))
        await waiter

    async def _commit_waiting(self, link: _Joined) -> None:
        while self._to_commit:
            offsets, self._to_commit = self._to_commit, {}
            waiters, self._commit_waiters = self._commit_waiters, []
            try:
                await link.client.commit(offsets)
            except BaseException as exc:  # each settle handles it as its own
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    def _offsets(self, link: _Joined, batch: Batch) -> dict[Any, int]:
        """The positions to commit: one past the batch's last message in each partition."""
        topic_partition = link.aiokafka.TopicPartition
        fresh, retried = offsets_in(batch)
        offsets: dict[Any, int] = {}
        if fresh:
            offsets[topic_partition(self.topic, batch.partition)] = max(fresh) + 1
        if retried:
            offsets[topic_partition(self.retry_topic, batch.partition)] = max(retried) + 1
        return offsets

    def _rewind(self, link: _Joined, batch: Batch) -> None:
        """Settling failed: fetch the batch again once the slot is resumed."""
        if self._in_flight.get(batch.partition) is not batch:
            return
        topic_partition = link.aiokafka.TopicPartition
        fresh, retried = offsets_in(batch)
        assigned = link.client.assignment()
        for topic, offsets in ((self.topic, fresh), (self.retry_topic, retried)):
            tp = topic_partition(topic, batch.partition)
            if offsets and tp in assigned:
                link.client.seek(tp, min(offsets))


def _fetcher_tick(client: Any, seconds: float) -> None:
    """Set how often ``client``'s background fetcher wakes when it has nothing to do.

    aiokafka takes it once (``consumer_timeout_ms``); a dozing member has every
    partition paused, so its fetcher only ticks, 5 times a second per member at the
    awake setting, which in ``pigeon run`` (six members) cost ~0.7 % of a core of an
    idle process. The attribute is aiokafka's own and not public: without it the
    member keeps the awake tick, which is correct, only busier when idle.
    """
    fetcher = _tickable_fetcher(client)
    if fetcher is not None:
        fetcher._fetcher_timeout = seconds


def _tickable_fetcher(client: Any) -> Any:
    """``client``'s background fetcher, if it has the tick :func:`_fetcher_tick` sets."""
    fetcher = getattr(client, "_fetcher", None)
    return fetcher if isinstance(getattr(fetcher, "_fetcher_timeout", None), float) else None
