"""Group commit: many callers' writes share one transaction.

SQLite commits one transaction at a time, and each commit is an fsync of the
WAL. Concurrent requests put their unit of work on a queue; one writer task
runs everything that has gathered in a single transaction and commits once,
then answers every caller. Nobody's write is acknowledged before its commit.
If a shared transaction fails, each unit is retried alone, so one bad unit
cannot fail the others.

Plain writes (:meth:`GroupCommitter.write`) are merged across callers: every
caller's rows for one statement go into a single ``executemany``, so a group
of N accepted notifications costs three statements, not 3·N.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.base import Executable

from pigeon.errors import PigeonError, StoreUnavailable
from pigeon.store.engine import is_busy

#: how long a write waits for other processes' transactions before failing
BUSY_WAIT_SECONDS = 10.0

log = logging.getLogger(__name__)

T = TypeVar("T")
#: a statement and the rows to run it with (every row with the same keys)
Write = tuple[Executable, list[dict[str, Any]]]
Work = Callable[[AsyncConnection], Awaitable[Any]] | list[Write]


class GroupCommitter:
    """Runs submitted units of work in shared transactions on one engine."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 512,
        on_commit: Callable[[], None] | None = None,
        before_commit: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> None:
        self._engine = engine
        self._before_commit = before_commit
        self._max_batch = max_batch
        self._on_commit = on_commit or (lambda: None)
        # None is the stop sentinel: everything queued before it is still written
        self._queue: asyncio.Queue[tuple[Work, asyncio.Future[Any]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="pigeon-group-commit")

    async def stop(self) -> None:
        """Finish what is queued, then stop the writer."""
        task, self._task = self._task, None
        if task is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(task), 30)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def submit(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work(conn)`` in a transaction; returns after the commit."""
        return await self._enqueue(work)  # type: ignore[no-any-return]  # work's own T

    async def write(self, writes: list[Write]) -> None:
        """Run plain writes, merged with other callers'; returns after the commit."""
        await self._enqueue([(stmt, rows) for stmt, rows in writes if rows])

    async def _enqueue(self, work: Work) -> Any:
        if self._task is None or self._task.done():
            raise StoreUnavailable("the store is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((work, future))
        return await future

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                return
            items = [first]
            while len(items) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                items.append(item)
            try:
                results = await self._commit([work for work, _ in items])
            except Exception as exc:
                if len(items) == 1:
                    self._fail(items[0][1], exc)
                    continue
                for work, future in items:  # isolate the unit that failed
                    try:
                        (result,) = await self._commit([work])
                    except Exception as single_exc:
                        self._fail(future, single_exc)
                    else:
                        if not future.done():
                            future.set_result(result)
                continue
            for (_, future), result in zip(items, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _commit(self, works: list[Work]) -> list[Any]:
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        while True:
            try:
                return await self._commit_once(works)
            except OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(random.uniform(0.0005, 0.002))

    async def _commit_once(self, works: list[Work]) -> list[Any]:
        async with self._engine.begin() as conn:
            results: list[Any] = []
            merged: dict[Executable, list[dict[str, Any]]] = {}
            for work in works:
                if isinstance(work, list):
                    for stmt, rows in work:
                        merged.setdefault(stmt, []).extend(rows)
                    results.append(None)
                    continue
                await _flush(conn, merged)  # earlier writes first: order is kept
                results.append(await work(conn))
            await _flush(conn, merged)
            if self._before_commit is not None:
                await self._before_commit(conn)
        self._on_commit()
        return results

    @staticmethod
    def _fail(future: asyncio.Future[Any], exc: Exception) -> None:
        if future.done():
            return
        if isinstance(exc, PigeonError):
            future.set_exception(exc)
        elif isinstance(exc, SQLAlchemyError):
            error = StoreUnavailable(f"database write failed: {exc.__class__.__name__}: {exc}")
            error.__cause__ = exc
            future.set_exception(error)
        else:
            log.exception("unexpected error in a store transaction", exc_info=exc)
            future.set_exception(exc)


async def _flush(conn: AsyncConnection, merged: dict[Executable, list[dict[str, Any]]]) -> None:
    for stmt, rows in merged.items():
        await conn.execute(stmt, rows)
    merged.clear()
