"""A background pass repeated at an interval until asked to stop (retention, status polls)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

from pigeon.errors import PigeonError

log = logging.getLogger(__name__)


class Periodic(ABC):
    """Runs :meth:`sweep` until :meth:`request_stop`, pausing ``interval`` seconds between.

    A failed pass is logged and the next one tries again. ``WHAT`` names the pass in
    the log; ``CATCH_ALL``: an unexpected error is logged too instead of ending the loop
    (housekeeping must not take its worker down with it).
    """

    WHAT = "periodic pass"
    CATCH_ALL = False

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        """Return from :meth:`run` at the next pause."""
        self._stopping.set()

    async def run(self) -> None:
        """Pass, pause, repeat."""
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except PigeonError as exc:
                log.warning("%s failed (the next one tries again): %s", self.WHAT, exc)
            except Exception:
                if not self.CATCH_ALL:
                    raise
                log.exception("%s failed unexpectedly (the next one tries again)", self.WHAT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    @abstractmethod
    async def sweep(self) -> object:
        """One pass."""
