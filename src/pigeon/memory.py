"""Giving memory back to the system once a burst of work is over.

A worker that drains a backlog frees most of what it allocated, but C's
allocator (glibc's ``malloc``) keeps the freed pages for the next allocation,
spread over the arenas of every thread that allocated: SQLite's page caches
and statements (on the bus and store threads), aiohttp's buffers, batches of
rows. Measured on ``pigeon run``'s workers after a 20,000-message drain, 5 MiB
of resident memory was free inside the allocator and went back to the system
at once with ``malloc_trim(0)``; nothing else in the process could reach it.

:class:`QuietTrim` does that once work stops: every handled batch calls
:meth:`QuietTrim.worked`, which only notes the time (and arms one timer when
none is armed); when the timer fires and the last batch is
:data:`QUIET_SECONDS` old, it trims and disarms, else it fires again that
long after the last batch. An idle process holds no timer and does nothing; a
busy one pays one check every couple of seconds. Where the C library has no
``malloc_trim`` (musl, macOS), nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

#: a process counts as quiet once this long passed without handled work
QUIET_SECONDS = 2.0


def _glibc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover - no C library found (not Linux or macOS)
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - musl, macOS
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


class QuietTrim:
    """Trims the C heap once work has stopped for :data:`QUIET_SECONDS`."""

    def __init__(
        self,
        trim: Callable[[], int] | None,
        *,
        quiet_seconds: float = QUIET_SECONDS,
    ) -> None:
        """``trim``: what gives memory back (glibc's ``malloc_trim(0)``); None: nothing can."""
        self._trim = trim
        self._quiet = quiet_seconds
        self._last_work = 0.0  # the event loop's clock
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.trims = 0  # how often memory was given back (for tests and curiosity)

    def worked(self) -> None:
        """Note that work was done just now (cheap: called after every batch)."""
        if self._trim is None:
            return
        loop = asyncio.get_running_loop()
        self._last_work = loop.time()
        # a timer armed on an earlier event loop (one process may run several in turn)
        # never fires: arm one on this loop
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(self._quiet, self._check)

    def _check(self) -> None:
        assert self._loop is not None and self._trim is not None  # armed by worked()
        quiet_for = self._loop.time() - self._last_work
        if quiet_for < self._quiet:  # worked since: look again a period after that work
            self._timer = self._loop.call_later(self._quiet - quiet_for, self._check)
            return
        self._timer = None
        self._trim()
        self.trims += 1


#: the process's one trimmer: every consumer of a process shares it
QUIET_TRIM = QuietTrim(_glibc_trim())
