"""The intake relay: moves what the API accepted from its intake file into the store.

Embedded default only (see :mod:`pigeon.store.intake`). Every worker process
runs one; the one holding the intake's relay lock moves, the others stand by
and take over within ``standby_interval`` when it dies (the kernel releases
the lock of a killed process). The API's commit to the intake file rings the
active relay (a doorbell of the intake file's own, so consumers are not woken
for nothing); it looks whether the intake holds rows past what it last moved (a
read, no lock), and if so moves them in chunks, each in one store transaction
with the relay's position, so every row is moved exactly once, even across a
takeover. The store's commit wakes the consumers. Under steady traffic the relay
looks at most once per ``linger`` (a few rows per transaction rather than
one); after a quiet spell it moves at once. Moved rows are forgotten in
the intake file at most once per ``forget_every`` seconds, in one short
transaction, so the API's writer is seldom held up by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pigeon.errors import PigeonError
from pigeon.store.intake import Moved, RelayLock
from pigeon.store.sql_store import SqlStore

log = logging.getLogger(__name__)


class IntakeRelay:
    """Moves intake rows into the store; run it with :meth:`run`, stop with :meth:`request_stop`."""

    def __init__(
        self,
        store: SqlStore,
        *,
        batch_size: int = 512,
        linger: float = 0.01,
        forget_every: float = 1.0,
        poll_interval: float = 1.0,
        standby_interval: float = 1.0,
        error_backoff: float = 1.0,
    ) -> None:
        if store.intake_path is None:
            raise ValueError("the intake relay needs a store with an intake file")
        self._store = store
        self._lock = RelayLock(store.intake_path)
        self._batch_size = batch_size
        self._linger = linger
        self._forget_every = forget_every
        self._poll_interval = poll_interval
        self._standby_interval = standby_interval
        self._error_backoff = error_backoff
        self._woken = asyncio.Event()
        self._stopping = False
        #: where this relay last saw the store's positions (None: not looked yet)
        self._seen: tuple[int, int] | None = None
        #: moved but not yet forgotten in the intake file
        self._unforgotten: Moved | None = None
        #: whether the last look moved something (then the next one lingers first)
        self._seen_moving = False
        self._forgot_at = time.monotonic()
        self.moved = 0
        #: set once the relay runs (moving, or standing by for another process's)
        self.started = asyncio.Event()

    @property
    def active(self) -> bool:
        """Whether this relay is the one moving (it holds the relay lock)."""
        return self._lock.held

    def wake(self) -> None:
        """Something was committed to the intake: look now rather than at the next poll."""
        self._woken.set()

    def request_stop(self) -> None:
        """Finish the chunk in hand, then return from :meth:`run`."""
        self._stopping = True
        self._woken.set()

    async def run(self) -> None:
        """Move until stopped; an unavailable store is logged and retried, never fatal."""
        self.started.set()
        try:
            while not self._stopping and not self._lock.try_acquire():
                await self._pause(self._standby_interval)
            if self._stopping:
                return
            await self._store.listen_intake(self.wake)
            await self._move()
        finally:
            self._lock.release()

    async def _move(self) -> None:
        while not self._stopping:
            self._woken.clear()
            try:
                busy = await self._step()
            except PigeonError as exc:
                log.warning("intake relay: %s; retrying in %.1fs", exc, self._error_backoff)
                await self._pause(self._error_backoff)
                continue
            if busy:
                continue
            if self._seen_moving:
                # under steady traffic each commit rings: let a few gather, so that
                # one store transaction moves them (after a quiet spell: at once)
                await asyncio.sleep(self._linger)
            await self._pause(self._forget_every if self._unforgotten else self._poll_interval)
        with contextlib.suppress(PigeonError):  # a last clean-up; the next relay does it anyway
            await self._forget(force=True)

    async def _step(self) -> bool:
        """One look (and move, if there is anything); True when more may be waiting."""
        heads = await self._store.intake_heads()
        if self._seen is not None and heads[0] <= self._seen[0] and heads[1] <= self._seen[1]:
            self._seen_moving = False
            await self._forget(force=False)
            return False
        moved = await self._store.move_intake(self._batch_size)
        self._seen = (moved.notifications_seq, moved.callbacks_seq)
        self._seen_moving = bool(moved.notifications or moved.callbacks)
        if moved.notifications or moved.callbacks:
            self.moved += moved.notifications + moved.callbacks
            self._unforgotten = moved
        if moved.kept:
            log.info("%d status callback(s) for message ids not recorded yet; kept", moved.kept)
        await self._forget(force=False)
        return moved.notifications >= self._batch_size or moved.callbacks >= self._batch_size

    async def _forget(self, *, force: bool) -> None:
        moved = self._unforgotten
        if moved is None or (not force and time.monotonic() - self._forgot_at < self._forget_every):
            return
        await self._store.forget_moved_intake(moved)
        self._forgot_at = time.monotonic()
        if self._unforgotten is moved:
            self._unforgotten = None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), seconds)
