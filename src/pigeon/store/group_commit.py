"""Group commit: many callers' writes share one transaction, run in one thread.

SQLite commits one transaction at a time, and each commit is an fsync of the
WAL. Concurrent callers put their unit of work on a queue; the process's writer
thread takes everything that has gathered, runs it in a single transaction on
a synchronous connection and commits once; then every caller is answered.
Nobody's write is acknowledged before its commit. If a shared transaction
fails, each unit is retried alone, so one bad unit cannot fail the others.

The whole transaction is one call into the writer thread: no statement pays a
thread hop of its own, and the SQLite write lock is never held while the
event loop serves requests (with per-statement awaits it was, and every other
process waited for this one's event loop).

Plain writes (:meth:`GroupCommitter.write`) are merged across callers: every
caller's rows for one statement are written together (raw SQL on SQLite: a few
multi-row ``INSERT`` statements, :mod:`pigeon.store.sqlite_rows`), so a group
of N accepted notifications costs a few statements, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError, StatementError
from sqlalchemy.sql.base import Executable

from pigeon import metrics
from pigeon.bus.sqlite_schema import forget_touched, take_touched, touch
from pigeon.bus.sqlite_write_lock import FileWriteLock, no_lock
from pigeon.errors import PigeonError, StoreUnavailable
from pigeon.store import sqlite_rows
from pigeon.store.engine import is_busy
from pigeon.store.event_log import INSERT_EVENT

#: how long a write waits for other processes' transactions before failing
BUSY_WAIT_SECONDS = 10.0

log = logging.getLogger(__name__)

T = TypeVar("T")
#: a statement and the rows to run it with (every row with the same keys); a statement
#: given as SQL text goes to the driver as it is, with positional rows (tuples)
Write = tuple[Executable | str, list[Any]]
#: a set-based function over many callers' items; one result per item, in order
MergedFn = Callable[[Connection, list[Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class Merged:
    """One caller's item for a set-based function that runs once per transaction."""

    fn: MergedFn
    item: Any
    #: ``fn`` writes everything in one statement: on PostgreSQL a group of nothing else
    #: runs it without BEGIN and COMMIT, one round trip instead of three (the statement
    #: is its own transaction); on SQLite a transaction costs no round trip
    one_statement: bool = False


Work = Callable[[Connection], Any] | list[Write] | Merged


@dataclass(frozen=True, slots=True)
class _Unit:
    """One caller's work, its answer, and whether its commit wakes nobody."""

    work: Work
    future: asyncio.Future[Any]
    quiet: bool


class GroupCommitter:
    """Runs submitted units of work in shared transactions on one connection.

    The writer thread owns the queue: it takes everything that has gathered,
    commits it, hands the results to the event loop and at once takes the next
    group. Commits follow each other without waiting for the event loop to come
    round, so a busy loop delays only its own callers' answers, never the
    database's next commit (nor, on SQLite, the write lock other processes wait for).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 512,
        on_commit: Callable[[], None] | None = None,
        before_commit: Callable[[Connection], None] | None = None,
        write_lock: FileWriteLock | None = None,
        name: str = "store",
        on_topics: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        """``name``: which committer its metrics are labelled with (store, intake, callbacks).

        ``on_topics``: called in the writer thread right after each commit, before its
        callers are answered, with the topics of the embedded log it wrote to
        (:func:`~pigeon.bus.sqlite_schema.touch`).
        """
        self._on_topics = on_topics
        self._engine = engine
        self._one_round_trip = engine.dialect.name == "postgresql"
        #: SQLite: the writer thread keeps its one connection for its whole life (see
        #: :meth:`_transaction`); PostgreSQL: committers share the engine's pool
        self._keeps_connection = engine.dialect.name == "sqlite"
        self._conn: Connection | None = None
        self._metrics = metrics.commits(name)  # None: metrics off
        self._write_lock = write_lock
        self._before_commit = before_commit
        self._max_batch = max_batch
        self._on_commit = on_commit or (lambda: None)
        # None is the stop sentinel: everything queued before it is still written
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def started(self) -> bool:
        """Whether the writer thread runs."""
        return self._thread is not None

    async def start(self) -> None:
        """Start the writer thread."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer, name="pigeon-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Finish what is queued, then stop the writer and close its connection."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 30)
            if thread.is_alive():
                log.warning("the store's writer did not finish within 30 s")
        if self._write_lock is not None:
            self._write_lock.close()

    async def submit(self, work: Callable[[Connection], T], *, quiet: bool = False) -> T:
        """Run ``work(conn)`` in a transaction (in the writer thread); returns after the commit.

        ``quiet``: the work publishes nothing, so its commit need not wake consumers.
        """
        return await self._enqueue(work, quiet)  # type: ignore[no-any-return]  # work's own T

    async def submit_sqlite(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the raw sqlite3 connection, in a shared transaction (SQLite only).

        Quiet: the caller (the embedded bus) wakes consumers itself when it publishes.
        """

        def on_driver(conn: Connection) -> T:
            raw = conn.connection.driver_connection
            if not isinstance(raw, sqlite3.Connection):
                raise TypeError("submit_sqlite needs a SQLite store")
            return work(raw)

        return await self.submit(on_driver, quiet=True)

    async def merged(
        self, fn: MergedFn, item: Any, *, quiet: bool = False, one_statement: bool = False
    ) -> Any:
        """Run ``fn(conn, items)`` once for every caller's item in a transaction.

        For work whose cost is per statement, not per row (journal updates,
        callbacks): N concurrent callers cost one set-based call, not N.
        ``quiet`` as in :meth:`submit`. ``one_statement``: ``fn`` writes all it writes in
        one statement, so a group of nothing else may run it without a transaction block
        (see :class:`Merged`).
        """
        return await self._enqueue(Merged(fn, item, one_statement), quiet)

    async def write(self, writes: list[Write]) -> None:
        """Run plain writes, merged with other callers'; returns after the commit."""
        await self._enqueue([(stmt, rows) for stmt, rows in writes if rows], False)

    async def _enqueue(self, work: Work, quiet: bool) -> Any:
        if self._thread is None:
            raise StoreUnavailable("the store is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put(_Unit(work, future, quiet))
        return await future

    # -- the writer thread -------------------------------------------------
    def _writer(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    return
                units = [first]
                while len(units) < self._max_batch:
                    try:
                        unit = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if unit is None:
                        stopping = True
                        break
                    units.append(unit)
                self._write_group(units)
        finally:
            self._drop_connection()
            self._engine.dispose()

    def _write_group(self, units: list[_Unit]) -> None:
        started = time.perf_counter()
        try:
            results = self._commit_sync([u.work for u in units], _loud(units))
        except Exception as exc:
            if len(units) == 1:
                self._answer(units, None, exc)
                return
            # a shared transaction failed: each unit alone, so only the bad one fails
            for unit in units:
                try:
                    (result,) = self._commit_sync([unit.work], _loud([unit]))
                except Exception as exc:
                    self._answer([unit], None, exc)
                else:
                    self._answer([unit], [result], None)
            return
        if self._metrics is not None:
            self._metrics.committed(started, len(units))
        self._answer(units, results, None)

    def _answer(
        self, units: list[_Unit], results: list[Any] | None, error: Exception | None
    ) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._resolve, units, results, error)

    def _resolve(
        self, units: list[_Unit], results: list[Any] | None, error: Exception | None
    ) -> None:
        """On the event loop: wake consumers, answer every caller."""
        if results is None:
            for unit in units:
                self._fail(unit.future, error or StoreUnavailable("the write failed"))
            return
        if _loud(units):
            self._on_commit()
        for unit, result in zip(units, results, strict=True):
            if not unit.future.done():
                unit.future.set_result(result)

    def _commit_sync(self, works: list[Work], loud: bool) -> list[Any]:
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        while True:
            try:
                return self._commit_once(works, loud)
            except OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.0005, 0.002))

    def _commit_once(self, works: list[Work], loud: bool) -> list[Any]:
        """One transaction of ``works``; ``before_commit`` runs in it unless all are quiet.
        (PostgreSQL: a group of one-statement work is that statement alone.)"""
        lock = self._write_lock.held() if self._write_lock is not None else no_lock()
        forget_touched()
        if self._one_round_trip and (statement := _one_statement(works, loud, self._before_commit)):
            with lock, self._engine.connect() as plain:
                auto = plain.execution_options(isolation_level="AUTOCOMMIT")
                try:
                    return statement.fn(auto, [w.item for w in works])  # type: ignore[union-attr]
                except plain.dialect.loaded_dbapi.Error as exc:
                    raise _driver_error(plain, exc) from exc
        sets: dict[MergedFn, list[int]] = {}
        for index, work in enumerate(works):
            if isinstance(work, Merged):
                sets.setdefault(work.fn, []).append(index)
        with lock, self._transaction() as conn:
            results: list[Any] = [None] * len(works)
            merged: dict[Executable | str, list[Any]] = {}
            for index, work in enumerate(works):
                if isinstance(work, list):
                    for stmt, rows in work:
                        merged.setdefault(stmt, []).extend(rows)
                    continue
                _flush(conn, merged)  # earlier writes first: order is kept
                if isinstance(work, Merged):
                    # every caller's item at the first one's place, in one call
                    indices = sets.pop(work.fn, None)
                    if indices is not None:
                        items = [works[i].item for i in indices]  # type: ignore[union-attr]
                        for i, result in zip(indices, work.fn(conn, items), strict=True):
                            results[i] = result
                    continue
                results[index] = work(conn)
            _flush(conn, merged)
            if loud and self._before_commit is not None:
                self._before_commit(conn)
        topics = take_touched()
        if self._on_topics is not None:
            self._on_topics(topics)
        return results

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction, committed when the block ends without error.

        On SQLite on the writer's own connection, opened once: a checkout from
        the pool and its return (a ``ROLLBACK``) for every group was a third of
        the writer thread's time in the API at 346 accepts/s. A connection left
        in doubt by a failed rollback is closed, and the next group opens anew.
        """
        if not self._keeps_connection:
            with self._engine.begin() as conn:
                yield conn
            return
        if self._conn is None:
            self._conn = self._engine.connect()
        conn = self._conn
        try:
            with conn.begin():
                yield conn
        except BaseException:
            if conn.invalidated or conn.in_transaction():
                self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @staticmethod
    def _fail(future: asyncio.Future[Any], exc: Exception) -> None:
        if future.done():
            return
        if isinstance(exc, PigeonError):
            future.set_exception(exc)
        elif isinstance(exc, SQLAlchemyError | sqlite3.Error):
            error = StoreUnavailable(f"database write failed: {exc.__class__.__name__}: {exc}")
            error.__cause__ = exc
            future.set_exception(error)
        else:
            log.exception("unexpected error in a store transaction", exc_info=exc)
            future.set_exception(exc)


def _flush(conn: Connection, merged: dict[Executable | str, list[Any]]) -> None:
    for stmt, rows in merged.items():
        if isinstance(stmt, str):  # no compiling, no per-row parameter processing
            if conn.dialect.name == "sqlite":
                sqlite_rows.insert_many(conn, stmt, rows)  # a few statements, not one step per row
            else:
                conn.exec_driver_sql(stmt, rows)
        else:
            if stmt is INSERT_EVENT:
                touch(row["topic"] for row in rows)
            # one row: a plain execute (an executemany of one row pays for a pipeline)
            conn.execute(stmt, rows[0] if len(rows) == 1 else rows)
    merged.clear()


def _driver_error(conn: Connection, exc: Any) -> StatementError:
    """A driver's own error (raised by a statement sent on the raw connection) as
    SQLAlchemy's, as if SQLAlchemy had run the statement: so that a busy database is
    retried and a lost one answers 503 (:class:`StoreUnavailable`), and a connection
    the server dropped is not handed out again."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
    if lost:
        conn.invalidate(exc)
    error: StatementError = DBAPIError.instance(
        None, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
    )
    return error


def _one_statement(
    works: list[Work], loud: bool, before_commit: Callable[[Connection], None] | None
) -> Merged | None:
    """The one single-statement function every work of a group calls, if that is all the
    group does (nothing to run before the commit either), else None."""
    first = works[0]
    if not isinstance(first, Merged) or not first.one_statement:
        return None
    if loud and before_commit is not None:
        return None
    # == and not 'is': each access to a bound method makes a new object
    if all(isinstance(w, Merged) and w.one_statement and w.fn == first.fn for w in works):
        return first
    return None


def _loud(units: list[_Unit]) -> bool:
    """Whether a commit of ``units`` may have published something (wakes consumers)."""
    return not all(u.quiet for u in units)
