"""One SQLite writer at a time across processes, handed over by the kernel.

SQLite lets one transaction write at a time; a writer that finds the lock taken
gets ``SQLITE_BUSY`` and must sleep and try again. With several processes
(the API and each worker) that polling wastes most of the lock's time: the
lock is free while every waiter sleeps, and a waiter that wakes often loses to
a newcomer. Pigeon's writers first take an exclusive ``flock`` on a file
beside the database: the kernel queues the waiters and wakes one the moment
the holder lets go, and releases the lock of a process killed with ``kill -9``.
``BEGIN IMMEDIATE`` then almost never finds the database busy (a writer that
does not take the file lock, such as a migration, is still waited out by the
busy retry).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class FileWriteLock:
    """An exclusive ``flock`` on ``<database>-writer.lock``, taken around each transaction."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + "-writer.lock")
        self._fd: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block (blocking: call from a writer thread)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (the lock itself is never held between blocks)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def no_lock() -> Iterator[None]:
    """For databases that order their writers themselves (PostgreSQL)."""
    yield
