"""Giving memory back to the system once a burst of work is over.

A worker that drains a backlog frees most of what it allocated, but C's
allocator (glibc's ``malloc``) keeps the freed pages for the next allocation,
spread over the arenas of every thread that allocated: SQLite's page caches
and statements (on the bus and store threads), aiohttp's buffers, batches of
rows. Measured on ``pigeon run``'s workers after a 20,000-message drain, 5 MiB
of resident memory was free inside the allocator and went back to the system
at once with ``malloc_trim(0)``; nothing else in the process could reach it.

:class:`QuietTrim` does that once work stops: every handled batch calls
:meth:`QuietTrim.worked`, which only sets a flag (and arms one timer when none
is armed); the timer checks every :data:`QUIET_SECONDS` whether work went on,
and once a whole period passed without any, it trims and disarms. An idle
process holds no timer and does nothing; a busy one pays one check every
couple of seconds. Where the C library has no ``malloc_trim`` (musl, macOS),
nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

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
        self._worked = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.trims = 0  # how often memory was given back (for tests and curiosity)

    def worked(self) -> None:
        """Note that work was done just now (cheap: called after every batch)."""
        self._worked = True
        if self._trim is None:
            return
        loop = asyncio.get_running_loop()
        # a timer armed on an earlier event loop (one process may run several in turn)
        # never fires: arm one on this loop
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(self._quiet, self._check)

    def _check(self) -> None:
        if self._worked and self._loop is not None:  # still busy: look again later
            self._worked = False
            self._timer = self._loop.call_later(self._quiet, self._check)
            return
        self._timer = None
        if self._trim is None:  # pragma: no cover - never armed without one
            return
        try:
            self._trim()
        except OSError:  # pragma: no cover - the C call cannot fail this way; never fatal
            log.debug("malloc_trim failed", exc_info=True)
        self.trims += 1

    def close(self) -> None:
        """Disarm the timer (the process is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


#: the process's one trimmer: every consumer of a process shares it
QUIET_TRIM = QuietTrim(_glibc_trim())
