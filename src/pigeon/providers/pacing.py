"""Outbound pacing: a token bucket per provider sender, shared by the processes of one machine.

Carriers and Twilio cap each sender number (about 1 SMS/s for a long code,
100/s for a short code); going faster earns 429s and queue overflows
(30001), then filtering. So each send first reserves a token and waits for
it instead of failing: the bucket answers "your token is due in 0.4 s".

The bucket is GCRA (the "virtual scheduling" form of a token bucket): one
number per bucket, the theoretical arrival time ``tat`` of the next token.
A reservation moves ``tat`` one interval on and tells the caller how long to
wait; ``burst`` tokens may be taken at once after a quiet spell::

    interval = 1 / rate
    tat'     = max(tat, now) + interval
    wait     = max(0, tat' - burst * interval - now)

:class:`SqliteTokenBucket` keeps ``tat`` in a small SQLite file updated under
``BEGIN IMMEDIATE``, so every worker process on the machine draws from the
same bucket; :class:`InProcessTokenBucket` is the same arithmetic in memory
for a single process. Wall-clock time is used because it is the one clock
all processes share and that survives a reboot; a clock stepped backwards is
detected and the bucket shifted along with it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pigeon import metrics
from pigeon.domain.delivery import DeliveryReport
from pigeon.errors import ProviderRejected, ProviderUnavailable
from pigeon.providers.port import (
    ProviderReceipt,
    ReconcilingProvider,
    SmsMessage,
    SmsProvider,
    StatusFetchingProvider,
    supports_find_sent,
)

log = logging.getLogger(__name__)

#: A clock step backwards larger than this is treated as a clock change, not jitter.
_CLOCK_STEP_SECONDS = 1.0


def reserve(tat: float, now: float, *, rate: float, burst: int) -> tuple[float, float]:
    """One GCRA reservation: the bucket's new ``tat`` and the seconds to wait for the token."""
    interval = 1.0 / rate
    new_tat = max(tat, now) + interval
    return new_tat, max(0.0, new_tat - burst * interval - now)


def _check(rate: float, burst: int) -> None:
    if not rate > 0:
        raise ValueError(f"rate_per_second must be above 0, got {rate}")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be a whole number of at least 1, got {burst!r}")


class TokenBucket(Protocol):
    """Hands out send slots at ``rate`` per second per key, ``burst`` at once."""

    async def start(self) -> None:
        """Open whatever holds the state."""
        ...

    async def stop(self) -> None:
        """Close it; safe to call twice."""
        ...

    async def reserve(self, key: str) -> float:
        """Take the next token of bucket ``key``; return the seconds until it is due."""
        ...

    def refund(self, key: str) -> None:
        """Give back a token reserved but not used (the send was cancelled while waiting)."""
        ...


class InProcessTokenBucket:
    """The bucket in memory: paces one process only."""

    def __init__(
        self, *, rate_per_second: float, burst: int = 1, clock: Callable[[], float] = time.time
    ) -> None:
        _check(rate_per_second, burst)
        self.rate = rate_per_second
        self.burst = burst
        self._clock = clock
        self._tat: dict[str, float] = {}

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def reserve(self, key: str) -> float:
        """Take the next token of bucket ``key``; return the seconds until it is due."""
        return self.reserve_now(key)

    def reserve_now(self, key: str) -> float:
        """:meth:`reserve` without the event loop (the arithmetic, for tests and callers)."""
        now = self._clock()
        self._tat[key], wait = reserve(
            self._tat.get(key, now), now, rate=self.rate, burst=self.burst
        )
        return wait

    def refund(self, key: str) -> None:
        """Give back a token reserved but not used."""
        if key in self._tat:
            self._tat[key] -= 1.0 / self.rate


_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    key     TEXT PRIMARY KEY,
    tat     REAL NOT NULL,   -- when the next token is due (Unix time), GCRA
    updated REAL NOT NULL    -- wall clock at the last reservation, to spot clock steps
)
"""


class SqliteTokenBucket:
    """The bucket in a SQLite file: every process opening the same file shares it.

    All SQLite work runs on one dedicated thread per bucket object, so the
    event loop never blocks on the file lock and the connection never changes
    threads.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        rate_per_second: float,
        burst: int = 1,
        clock: Callable[[], float] = time.time,
        busy_timeout_seconds: float = 30.0,
    ) -> None:
        _check(rate_per_second, burst)
        self.path = Path(path)
        self.rate = rate_per_second
        self.burst = burst
        self._clock = clock
        self._busy_timeout = busy_timeout_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    async def start(self) -> None:
        """Create the file and table if needed, on the bucket's own thread."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pigeon-pacing")
        try:
            await self._run(self._open)
        except (sqlite3.Error, OSError) as exc:
            await self.stop()
            raise ProviderUnavailable(f"pacing state {self.path} cannot be opened: {exc}") from exc
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the database after pending refunds ran (idempotent)."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._close)
        executor.shutdown(wait=True)

    async def reserve(self, key: str) -> float:
        """Take the next token of bucket ``key`` under an exclusive lock; return the wait."""
        try:
            return await self._run(self._reserve, key)
        except sqlite3.Error as exc:
            raise ProviderUnavailable(
                f"pacing state {self.path} cannot be updated ({exc}); nothing was sent"
            ) from exc

    def refund(self, key: str) -> None:
        """Give back a token without waiting (runs on the bucket's thread)."""
        if self._executor is not None:
            self._executor.submit(self._refund, key)

    async def _run(self, function: Callable[..., float | None], *args: str) -> float:
        if self._executor is None:
            raise ProviderUnavailable(
                "the pacing bucket is not started: await provider.start() before send()"
            )
        result = await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        return result or 0.0

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Switching a new file to WAL needs an exclusive lock and SQLite does not
        # wait for it (no busy handler): processes starting together retry here.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                # Losing the last reservations in a power cut costs one burst, never correctness.
                db.execute("PRAGMA synchronous=OFF")
                db.execute(_SCHEMA)
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            except BaseException:
                db.close()
                raise
            self._db = db
            return

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _reserve(self, key: str) -> float:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            now = self._clock()
            row = db.execute("SELECT tat, updated FROM buckets WHERE key = ?", (key,)).fetchone()
            tat = now
            if row is not None:
                tat, updated = float(row[0]), float(row[1])
                if now < updated - _CLOCK_STEP_SECONDS:
                    tat -= updated - now  # the clock was set back: move the schedule with it
            new_tat, wait = reserve(tat, now, rate=self.rate, burst=self.burst)
            db.execute(
                "INSERT INTO buckets (key, tat, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, updated = excluded.updated",
                (key, new_tat, now),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return wait

    def _refund(self, key: str) -> None:
        try:
            self._connection().execute(
                "UPDATE buckets SET tat = tat - ? WHERE key = ?", (1.0 / self.rate, key)
            )
        except sqlite3.Error:
            log.warning("could not give a pacing token back to %s in %s", key, self.path)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the pacing database is closed")
        return self._db


class PacedProvider:
    """Wraps a provider so that its sends keep to a rate, waiting for their turn.

    Carriers limit each sender number, so there is one bucket per number:
    ``<provider name>:<from number>``, where a message without ``from_number``
    counts against ``default_from`` (the provider's default sender; without
    it, against ``<provider name>`` alone). ``state_path`` shares the buckets
    with every process using the same file; without it they live in this
    process only. ``clock`` (wall-clock seconds) and ``sleep`` (the wait for
    a token) can be replaced, so that tests observe the waits without taking them;
    :attr:`held` counts the sends that had to wait for their token.
    """

    def __init__(
        self,
        inner: SmsProvider,
        *,
        rate_per_second: float,
        burst: int = 1,
        state_path: Path | str | None = None,
        default_from: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self._sleep = sleep
        #: sends that waited for their token (pacing held them back)
        self.held = 0
        self.name = inner.name
        bound = metrics.provider(inner.name)
        self._waits = bound.pacing_wait if bound is not None else None  # None: metrics off
        self._default_from = default_from
        self.bucket: TokenBucket = (
            SqliteTokenBucket(state_path, rate_per_second=rate_per_second, burst=burst, clock=clock)
            if state_path is not None
            else InProcessTokenBucket(rate_per_second=rate_per_second, burst=burst, clock=clock)
        )

    @property
    def can_reconcile(self) -> bool:
        """Whether the wrapped provider can look messages up."""
        return supports_find_sent(self.inner)

    async def start(self) -> None:
        """Open the bucket, then the provider."""
        await self.bucket.start()
        try:
            await self.inner.start()
        except BaseException:
            await self.bucket.stop()
            raise

    async def stop(self) -> None:
        """Stop the provider, then close the bucket (idempotent)."""
        await self.inner.stop()
        await self.bucket.stop()

    def bucket_key(self, message: SmsMessage) -> str:
        """The bucket ``message`` draws from: one per sender number."""
        sender = message.from_number or self._default_from
        return f"{self.name}:{sender}" if sender else self.name

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        """Wait for a token, then send; a cancelled wait gives its token back."""
        key = self.bucket_key(message)
        wait = await self.bucket.reserve(key)
        if wait > 0:
            self.held += 1
            if self._waits is not None:
                self._waits.observe(wait)
            if wait > 5.0:
                log.info("pacing holds a message for %.1fs", wait, extra={"provider": self.name})
            try:
                await self._sleep(wait)
            except asyncio.CancelledError:
                self.bucket.refund(key)
                raise
        return await self.inner.send(message)

    async def fetch_status(self, message_id: str) -> DeliveryReport:
        """Delegate, unpaced: a read does not send anything."""
        if not isinstance(self.inner, StatusFetchingProvider):
            raise ProviderRejected(f"{self.name} cannot fetch message statuses")
        return await self.inner.fetch_status(message_id)

    async def find_sent(
        self, message: SmsMessage, *, sent_after: datetime
    ) -> ProviderReceipt | None:
        """Delegate the look-up, unpaced: it is a read on another of the provider's limits."""
        inner = self.inner
        if not isinstance(inner, ReconcilingProvider) or not supports_find_sent(inner):
            raise ProviderRejected(f"{self.name} cannot look messages up (no find_sent)")
        return await inner.find_sent(message, sent_after=sent_after)
