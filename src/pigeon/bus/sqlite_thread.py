"""One sqlite3 connection driven from asyncio through its own thread.

A whole unit of bus work (a poll over every partition, a settle) runs as one
function in the connection's thread: one thread hop per unit instead of one
per statement, which is what keeps the embedded bus fast.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from pigeon.bus.sqlite_schema import configure
from pigeon.bus.sqlite_write_lock import FileWriteLock
from pigeon.errors import BusUnavailable

P = ParamSpec("P")
T = TypeVar("T")


class SqliteThread:
    """Owns a connection and the single thread allowed to touch it."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self._path = path
        self._synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._write_lock = FileWriteLock(path)

    async def open(self) -> None:
        """Open the connection in its thread."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pigeon-sqlite")
        await self.run(self._open_sync)

    def _open_sync(self) -> None:
        conn = sqlite3.connect(
            self._path, timeout=10, isolation_level=None, check_same_thread=False
        )
        configure(conn, self._synchronous)
        self._conn = conn

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._executor is None:
            return
        if self._conn is not None:
            await self.run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
        self._executor = None
        self._write_lock.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection; only for functions running through :meth:`run`."""
        if self._conn is None:
            raise BusUnavailable(f"SQLite connection to {self._path} is not open")
        return self._conn

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in the connection's thread, mapping sqlite3 errors to ours."""
        if self._executor is None:
            raise BusUnavailable(f"SQLite connection to {self._path} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except sqlite3.Error as exc:
            raise BusUnavailable(f"SQLite event log {self._path}: {exc}") from exc

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT`` (thread side)."""
        with self._write_lock.held():
            return self._transaction(fn)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.conn
        deadline = time.monotonic() + 10.0
        while True:  # short own steps: SQLite's busy handler sleeps up to 100 ms
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.0005, 0.002))
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
