"""The API's cache of who an API key belongs to: refreshed ahead, one read per key.

Every ``/v1`` request names its account by key, and asking the database each
time costs a read per request. A process trusts what it read for
:data:`KEY_CACHE_SECONDS`, counted from when that read *started*, so a key
revoked in another process stops working here within that time.

Two things keep the expiry off the requests' latency (before, under a steady
load every request that arrived while the expired key was being read again
made a read of its own, once a second, and accept p99 showed the burst):

- **one read per key at a time**: requests that find the key expired wait for
  the read already under way instead of starting their own;
- **refresh ahead**: a request that finds the key within :data:`REFRESH_AHEAD_SECONDS`
  of its expiry is answered from the cache and starts the next read in the
  background, so under traffic the entry is renewed before anyone waits for it.

A revocation or a limit change made in this process forgets at once, and a
read that was under way at that moment is not kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from pigeon.domain.notification import Account

__all__ = ["KEY_CACHE_SECONDS", "KEY_CACHE_SIZE", "REFRESH_AHEAD_SECONDS", "KeyCache"]

log = logging.getLogger(__name__)

#: how long a process trusts a key it checked before asking again: a key revoked
#: elsewhere stops working in every API process within this long
KEY_CACHE_SECONDS = 1.0
#: a key used this close to its expiry is read again in the background
REFRESH_AHEAD_SECONDS = 0.25
#: keys kept in that cache at most
KEY_CACHE_SIZE = 10_000

#: what the cache asks the database: the account of a key hash, or None
Read = Callable[[str], Awaitable[Account | None]]


class KeyCache:
    """Accounts by key hash (one event loop; no lock needed)."""

    def __init__(
        self,
        read: Read,
        *,
        seconds: float = KEY_CACHE_SECONDS,
        ahead: float = REFRESH_AHEAD_SECONDS,
        size: int = KEY_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._seconds, self._ahead = read, seconds, min(ahead, seconds)
        self._size, self._clock = size, clock
        #: key hash -> (account, until when it may be used without asking again)
        self._entries: dict[str, tuple[Account, float]] = {}
        #: reads under way, by key hash
        self._reads: dict[str, asyncio.Task[Account | None]] = {}
        #: bumped by every forget: a read that started before it is not kept
        self._generation = 0
        #: background refreshes, held here until done (the loop keeps only weak references)
        self._refreshing: set[asyncio.Task[Account | None]] = set()

    async def account(self, digest: str) -> Account | None:
        """The account of the key with hash ``digest``, or None for no (active) key."""
        entry = self._entries.get(digest)
        if entry is not None:
            account, until = entry
            left = until - self._clock()
            if left > 0:
                if left <= self._ahead and digest not in self._reads:
                    refresh = self._start_read(digest)
                    self._refreshing.add(refresh)
                    refresh.add_done_callback(self._refreshed)
                return account
        read = self._reads.get(digest) or self._start_read(digest)
        # shielded: a caller that goes away does not cancel the others' read
        return await asyncio.shield(read)

    def forget(self, digest: str) -> None:
        """Ask the database again next time (the key was revoked here)."""
        self._generation += 1
        self._entries.pop(digest, None)
        self._reads.pop(digest, None)  # a later request reads again, not this old read

    def clear(self) -> None:
        """Ask the database again for every key (an account's limits changed here)."""
        self._generation += 1
        self._entries.clear()
        self._reads.clear()

    def _start_read(self, digest: str) -> asyncio.Task[Account | None]:
        task = asyncio.get_running_loop().create_task(self._read_and_keep(digest))
        self._reads[digest] = task
        return task

    async def _read_and_keep(self, digest: str) -> Account | None:
        started, generation = self._clock(), self._generation
        try:
            account = await self._read(digest)
        finally:
            if self._reads.get(digest) is asyncio.current_task():
                del self._reads[digest]
        if generation != self._generation:
            return account  # forgotten meanwhile: answer this once, keep nothing
        if account is None:
            self._entries.pop(digest, None)
            return None
        if len(self._entries) >= self._size and digest not in self._entries:
            self._entries.clear()  # keys tried once: forget them all
        self._entries[digest] = (account, started + self._seconds)
        return account

    def _refreshed(self, task: asyncio.Task[Account | None]) -> None:
        """A background refresh ended; one that failed leaves the entry to expire as usual,
        and the next use reads again."""
        self._refreshing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("refreshing an API key's account failed: %s", exc)
