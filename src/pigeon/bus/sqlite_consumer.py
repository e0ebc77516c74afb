"""A consumer-group member of the SQLite event bus (see :mod:`pigeon.bus.sqlite`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from pigeon.bus.port import (
    Ack,
    Batch,
    DeadLetter,
    Message,
    Outcome,
    RetryLater,
    dead_letter_headers,
)
from pigeon.bus.sqlite_schema import INSERT_LOG, log_row
from pigeon.bus.wakes import Wakes
from pigeon.errors import BusError

if TYPE_CHECKING:
    from pigeon.bus.sqlite import SqliteEventBus

log = logging.getLogger(__name__)


class SqliteConsumer:
    """One member of a consumer group; fetches per-partition batches and settles them.

    Its writes go through the bus's writer and its reads through the bus's reader
    thread; ``_lock`` keeps its own state changes (made in those threads) one at a
    time, as the single thread per consumer used to.
    """

    def __init__(
        self,
        bus: SqliteEventBus,
        topic: str,
        group: str,
        dead_letter_topic: str,
        member: str,
        *,
        linger_seconds: float = 0.0,
    ) -> None:
        self.topic = topic
        self._linger_seconds = linger_seconds
        self.group = group
        self.member = member
        self._bus = bus
        self._dead_letter_topic = dead_letter_topic
        self._lock = asyncio.Lock()
        self._partitions = 0
        self._dlq_partitions = 0
        #: partition -> committed position (last settled log id)
        self._owned: dict[int, int] = {}
        self._in_flight: set[int] = set()
        #: this member's share at the last rebalance; owned partitions outside it
        #: are being handed over: no new batches, released once settled
        self._assigned: set[int] = set()
        #: partition -> global max id at which the partition was read to its end
        self._caught_up: dict[int, int] = {}
        #: partition -> earliest not_before of its pending retries
        self._retry_due: dict[int, float] = {}
        self._wake = asyncio.Event()
        self._wake.set()  # look once at start
        self._last_poll = -math.inf
        #: whether the last poll read a full batch (a backlog: poll again at once)
        self._last_full = False
        self._interrupted = False
        #: what started each poll: a wake-up, a due retry, the fallback timer, an interrupt
        self.wakes = Wakes()
        #: polls the linger held back (to the end of its interval), counted as they go ahead
        self.lingered = 0
        self._held_back = False
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._waiting_for_partitions = False

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        """Join the group and claim this member's share of the partitions."""
        await self._bus.listen()
        self._partitions = await self._bus.partitions(self.topic)
        self._dlq_partitions = await self._bus.partitions(self._dead_letter_topic)
        await self._heartbeat()
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())

    async def stop(self) -> None:
        """Leave the group: release every lease so others take over at once."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None

        def _leave(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM bus_leases WHERE grp = ? AND topic = ? AND member = ?",
                (self.group, self.topic, self.member),
            )
            conn.execute(
                "DELETE FROM bus_members WHERE grp = ? AND topic = ? AND member = ?",
                (self.group, self.topic, self.member),
            )

        async with self._lock:
            with contextlib.suppress(BusError):
                await self._bus.write(_leave)
            self._owned.clear()
        self._bus.forget(self)

    def interrupt(self) -> None:
        """End a waiting :meth:`fetch` now (the runner is stopping)."""
        self._interrupted = True
        self._wake.set()

    def wake(self) -> None:
        """New entries or a freed partition: fetch without waiting for the poll."""
        self._wake.set()

    # -- membership --------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        interval = self._bus.lease_seconds / 3
        while True:
            handing_over = any(p not in self._assigned for p in self._owned)
            busy = self._waiting_for_partitions or handing_over
            await asyncio.sleep(0.05 if busy else interval)
            try:
                await self._heartbeat()
            except BusError as exc:  # a busy database must not end the member
                log.warning(
                    "bus heartbeat failed; the next one tries again",
                    extra={"group": self.group, "topic": self.topic, "error": str(exc)},
                )

    async def _heartbeat(self) -> None:
        async with self._lock:
            gained = await self._bus.write(self._rebalance)
            if gained:
                await self._bus.run_read(self._load_partitions, gained)
        if gained:
            self._wake.set()

    def _rebalance(self, conn: sqlite3.Connection) -> list[int]:
        now = time.time()
        expires = now + self._bus.lease_seconds
        key = (self.group, self.topic)
        conn.execute(
            "INSERT INTO bus_members (grp, topic, member, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grp, topic, member) DO UPDATE SET expires_at = excluded.expires_at",
            (*key, self.member, expires),
        )
        conn.execute(
            "DELETE FROM bus_members WHERE grp = ? AND topic = ? AND expires_at < ?", (*key, now)
        )
        members = [
            row[0]
            for row in conn.execute(
                "SELECT member FROM bus_members WHERE grp = ? AND topic = ? ORDER BY member", key
            )
        ]
        me = members.index(self.member)
        assigned = {p for p in range(self._partitions) if p % len(members) == me}
        self._assigned = assigned
        leases = {
            int(p): (m, float(e))
            for p, m, e in conn.execute(
                "SELECT partition, member, expires_at FROM bus_leases WHERE grp = ? AND topic = ?",
                key,
            )
        }
        # lost: our lease expired and someone else holds it now
        for partition in list(self._owned):
            holder = leases.get(partition)
            if holder is None or holder[0] != self.member:
                self._owned.pop(partition, None)
        # release what is no longer ours, once its batch is settled
        for partition in list(self._owned):
            if partition not in assigned and partition not in self._in_flight:
                conn.execute(
                    "DELETE FROM bus_leases WHERE grp = ? AND topic = ? AND partition = ? "
                    "AND member = ?",
                    (*key, partition, self.member),
                )
                self._owned.pop(partition)
        gained: list[int] = []
        waiting = False
        for partition in sorted(assigned):
            holder = leases.get(partition)
            if holder is not None and holder[0] != self.member and holder[1] >= now:
                waiting = True
                continue
            conn.execute(
                "INSERT INTO bus_leases (grp, topic, partition, member, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (grp, topic, partition) DO UPDATE "
                "SET member = excluded.member, expires_at = excluded.expires_at",
                (*key, partition, self.member, expires),
            )
            if partition not in self._owned:
                gained.append(partition)  # position loaded after commit
        # keep leases of partitions we still hold but are handing over
        for partition in self._owned:
            if partition not in assigned:
                conn.execute(
                    "UPDATE bus_leases SET expires_at = ? WHERE grp = ? AND topic = ? "
                    "AND partition = ? AND member = ?",
                    (expires, *key, partition, self.member),
                )
        self._waiting_for_partitions = waiting
        return gained

    def _load_partitions(self, conn: sqlite3.Connection, partitions: list[int]) -> None:
        for partition in partitions:
            row = conn.execute(
                "SELECT position FROM bus_offsets WHERE grp = ? AND topic = ? AND partition = ?",
                (self.group, self.topic, partition),
            ).fetchone()
            self._owned[partition] = int(row[0]) if row else 0
            self._caught_up.pop(partition, None)
            self._refresh_retry_due(conn, partition)

    def _refresh_retry_due(self, conn: sqlite3.Connection, partition: int) -> None:
        row = conn.execute(
            "SELECT min(not_before) FROM bus_retries WHERE grp = ? AND topic = ? AND partition = ?",
            (self.group, self.topic, partition),
        ).fetchone()
        self._retry_due[partition] = float(row[0]) if row and row[0] is not None else math.inf

    # -- fetching ----------------------------------------------------------
    async def fetch(self, max_messages: int, wait_seconds: float) -> list[Batch]:
        """Wait up to ``wait_seconds`` for messages on this member's idle partitions."""
        deadline = time.monotonic() + wait_seconds
        interval = self._bus.poll_interval
        retry_due = False
        while True:
            # poll only when woken (a commit here, a ring from elsewhere), when a retry
            # falls due, or on the slow fallback timer: an idle member costs nothing
            woken = self._wake.is_set()
            if woken or time.monotonic() - self._last_poll >= interval:
                if not await self._linger(deadline):
                    return []  # the caller's wait ends first; the wake-up stays set
                self._count_wake(woken, retry_due)
                retry_due = False
                if self._held_back:
                    self._held_back = False
                    self.lingered += 1
                self._wake.clear()
                self._last_poll = time.monotonic()
                async with self._lock:
                    batches = await self._bus.run_read(self._poll_sync, max_messages)
                self._last_full = any(len(b.messages) >= max_messages for b in batches)
                if batches:
                    return batches
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0 or self._interrupted:
                return []
            due = (
                min(
                    (
                        d
                        for p, d in self._retry_due.items()
                        if p in self._owned and p in self._assigned and p not in self._in_flight
                    ),
                    default=math.inf,
                )
                - time.time()
            )
            if due <= 0:
                self._wake.set()  # the retry store has work now
                retry_due = True
                continue
            wait = min(self._last_poll + interval - now, remaining, due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.001))

    def _count_wake(self, woken: bool, retry_due: bool) -> None:
        if self._interrupted:
            self.wakes.interrupted += 1
        elif retry_due:
            self.wakes.due += 1
        elif woken:
            self.wakes.rung += 1
        else:
            self.wakes.fallback += 1

    async def _linger(self, deadline: float) -> bool:
        """Poll a lingering group at most once per linger interval; whether to poll now.

        Under a steady stream every commit anywhere rings the doorbell; a member
        polling at each ring would take whatever arrived since, often one event,
        and pay a read, a transaction and the write lock for it. After a full
        batch (a backlog) the next poll starts at once; after a quiet spell too.
        """
        if not self._linger_seconds or self._last_full or self._interrupted:
            return True
        due = self._last_poll + self._linger_seconds
        pause = min(due, deadline) - time.monotonic()
        if pause > 0:
            self._held_back = True
            await asyncio.sleep(pause)
        return due <= deadline or self._interrupted

    def _poll_sync(self, conn: sqlite3.Connection, max_messages: int) -> list[Batch]:
        # A partition being handed over gets no new batch: under a steady backlog
        # it would otherwise always be in flight and never reach its new member.
        idle = [p for p in self._owned if p not in self._in_flight and p in self._assigned]
        if not idle:
            return []
        head = int(conn.execute("SELECT COALESCE(max(id), 0) FROM bus_log").fetchone()[0])
        now = time.time()
        batches = []
        for partition in idle:
            messages: list[Message] = []
            if self._retry_due.get(partition, math.inf) <= now:
                messages.extend(self._due_retries(conn, partition, now, max_messages))
                self._retry_due[partition] = math.inf  # recomputed when settled
            room = max_messages - len(messages)
            if room > 0 and head > self._caught_up.get(partition, -1):
                rows = conn.execute(
                    "SELECT id, key, value, headers FROM bus_log WHERE topic = ? "
                    "AND partition = ? AND id > ? ORDER BY id LIMIT ?",
                    (self.topic, partition, self._owned[partition], room),
                ).fetchall()
                if len(rows) < room:
                    self._caught_up[partition] = head
                messages.extend(
                    Message(self.topic, partition, offset, key, bytes(value), orjson.loads(headers))
                    for offset, key, value, headers in rows
                )
            if messages:
                self._in_flight.add(partition)
                batches.append(Batch(partition, messages))
        return batches

    def _due_retries(
        self, conn: sqlite3.Connection, partition: int, now: float, limit: int
    ) -> list[Message]:
        rows = conn.execute(
            "SELECT id, log_id, key, value, headers, attempt, not_before FROM bus_retries "
            "WHERE grp = ? AND topic = ? AND partition = ? AND not_before <= ? "
            "ORDER BY not_before, id LIMIT ?",
            (self.group, self.topic, partition, now, limit),
        ).fetchall()
        return [
            Message(
                self.topic,
                partition,
                log_id,
                key,
                bytes(value),
                orjson.loads(headers),
                attempt=attempt,
                retry_id=retry_id,
                not_before=not_before,
            )
            for retry_id, log_id, key, value, headers, attempt, not_before in rows
        ]

    # -- settling ----------------------------------------------------------
    async def settle(self, batch: Batch, outcomes: Sequence[Outcome]) -> None:
        """Apply every outcome and move the group's position, in one transaction."""
        await self.settle_many([(batch, outcomes)])

    async def settle_many(self, settled: Sequence[tuple[Batch, Sequence[Outcome]]]) -> None:
        """Settle batches of several partitions in one transaction."""
        for batch, outcomes in settled:
            if len(outcomes) != len(batch.messages):
                raise ValueError(f"{len(outcomes)} outcomes for {len(batch.messages)} messages")
        async with self._lock:
            try:
                kept, dead = await self._settle(settled)
            finally:
                for batch, _ in settled:
                    self._in_flight.discard(batch.partition)
                self._wake.set()
        for batch, _ in settled:
            if batch.partition not in kept:
                log.warning(
                    "partition moved to another member before its batch was settled; "
                    "its messages will be delivered again",
                    extra={"group": self.group, "topic": self.topic, "partition": batch.partition},
                )
        if dead:
            self._bus.wake()

    async def _settle(
        self, settled: Sequence[tuple[Batch, Sequence[Outcome]]]
    ) -> tuple[set[int], bool]:
        mine = [(b, o) for b, o in settled if b.partition in self._owned]
        if not mine:
            return set(), False

        def _apply(conn: sqlite3.Connection) -> tuple[set[int], bool]:
            holders = dict(
                conn.execute(
                    "SELECT partition, member FROM bus_leases WHERE grp = ? AND topic = ?",
                    (self.group, self.topic),
                ).fetchall()
            )
            kept: set[int] = set()
            dead = False
            for batch, outcomes in mine:
                if holders.get(batch.partition) != self.member:
                    continue
                kept.add(batch.partition)
                for message, outcome in zip(batch.messages, outcomes, strict=True):
                    dead |= self._apply_outcome(conn, message, outcome)
                positions = [m.offset for m in batch.messages if m.retry_id is None]
                if positions:
                    conn.execute(
                        "INSERT INTO bus_offsets (grp, topic, partition, position) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition) "
                        "DO UPDATE SET position = max(position, excluded.position)",
                        (self.group, self.topic, batch.partition, max(positions)),
                    )
            return kept, dead

        kept, dead = await self._bus.write(_apply)
        for batch, outcomes in mine:
            partition = batch.partition
            if partition not in kept:
                self._owned.pop(partition, None)
                continue
            positions = [m.offset for m in batch.messages if m.retry_id is None]
            if positions and partition in self._owned:
                self._owned[partition] = max(self._owned[partition], *positions)
            if any(
                not isinstance(o, Ack) or m.retry_id is not None
                for m, o in zip(batch.messages, outcomes, strict=True)
            ):  # the partition's retries changed
                await self._bus.run_read(self._refresh_retry_due, partition)
        return kept, dead

    def _apply_outcome(self, conn: sqlite3.Connection, message: Message, outcome: Outcome) -> bool:
        if isinstance(outcome, Ack):
            if message.retry_id is not None:
                conn.execute("DELETE FROM bus_retries WHERE id = ?", (message.retry_id,))
            return False
        if isinstance(outcome, RetryLater):
            not_before = time.time() + max(0.0, outcome.delay_seconds)
            if message.retry_id is not None:
                conn.execute(
                    "UPDATE bus_retries SET attempt = ?, not_before = ?, last_error = ? "
                    "WHERE id = ?",
                    (message.attempt + 1, not_before, outcome.reason, message.retry_id),
                )
            else:
                conn.execute(
                    "INSERT INTO bus_retries (grp, topic, partition, log_id, key, value, "
                    "headers, attempt, not_before, last_error) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.group,
                        self.topic,
                        message.partition,
                        message.offset,
                        message.key,
                        message.value,
                        orjson.dumps(dict(message.headers)).decode(),
                        message.attempt + 1,
                        not_before,
                        outcome.reason,
                    ),
                )
            return False
        if isinstance(outcome, DeadLetter):
            headers = dead_letter_headers(message, outcome.reason, self.group)
            conn.execute(
                INSERT_LOG,
                log_row(
                    self._dead_letter_topic,
                    self._dlq_partitions,
                    message.key,
                    message.value,
                    headers,
                ),
            )
            if message.retry_id is not None:
                conn.execute("DELETE FROM bus_retries WHERE id = ?", (message.retry_id,))
            return True
        raise TypeError(f"unknown outcome {outcome!r}")
