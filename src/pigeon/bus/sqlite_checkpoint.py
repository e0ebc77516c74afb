"""WAL checkpoints off the write path.

SQLite's default runs a checkpoint inside the commit that grows the WAL past
1,000 pages: that commit copies pages into the database file and fsyncs it,
and the request waiting on it sees tens of milliseconds (the API's p99 at a
low rate went from 7 ms to 20 ms with it). Pigeon's writers turn automatic
checkpoints off (:data:`NO_AUTO_CHECKPOINT`); instead every process that
commits runs a ``PASSIVE`` checkpoint from a thread and connection of its own
about once a second while it is writing. ``PASSIVE`` never blocks a writer or
a reader; a process that finds another one checkpointing simply skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

from pigeon.bus.sqlite_schema import NO_AUTO_CHECKPOINT
from pigeon.bus.sqlite_thread import SqliteThread

__all__ = ["NO_AUTO_CHECKPOINT", "Checkpointer"]
from pigeon.errors import BusError

log = logging.getLogger(__name__)

#: at most one checkpoint a process this often, and only after it committed
CHECKPOINT_INTERVAL_SECONDS = 1.0


class Checkpointer:
    """Checkpoints the WAL of ``path`` in the background after this process wrote."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self._db = SqliteThread(path, synchronous)
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the connection and start waiting for commits."""
        await self._db.open()
        self._task = asyncio.create_task(self._loop(), name="pigeon-wal-checkpoint")

    async def stop(self) -> None:
        """Stop checkpointing (the next process to write takes over)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._db.close()

    def committed(self) -> None:
        """This process committed: the WAL may have grown."""
        self._dirty.set()

    async def _loop(self) -> None:
        while True:
            await self._dirty.wait()  # asleep while nothing is written
            self._dirty.clear()
            try:
                await self._db.run(self._checkpoint)
            except BusError as exc:
                log.debug("WAL checkpoint skipped: %s", exc)
            await asyncio.sleep(CHECKPOINT_INTERVAL_SECONDS)

    def _checkpoint(self) -> None:
        with contextlib.suppress(sqlite3.OperationalError):  # busy: another one runs it
            self._db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
