"""The outbox's side of the relay: reading and deleting rows, and who may relay.

Exactly one relay publishes at a time, so events leave in the order they were
written (per key, that is the order of their transactions). The others wait
as hot standbys:

- PostgreSQL: a session advisory lock on a dedicated connection. The server
  drops it the moment that connection dies (``kill -9`` included), and the
  same connection ``LISTEN``s for the ``NOTIFY`` every store commit sends, so
  the relay wakes at once instead of polling.
- SQLite (one machine): an exclusive ``flock`` on a file beside the database,
  which the kernel releases when the process dies; new rows are noticed by an
  in-process wake-up or a short poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol

import orjson
from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from pigeon.errors import StoreUnavailable
from pigeon.pg_listen import connect_listener
from pigeon.store.engine import DatabaseUrl
from pigeon.store.group_commit import GroupCommitter
from pigeon.store.schema import outbox

log = logging.getLogger(__name__)

#: the advisory lock only the active relay holds ("PIGO"; with the schema's hash as 2nd key)
RELAY_LOCK_ID = 0x5049_474F


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One event waiting to be published."""

    id: int
    topic: str
    key: str
    value: bytes
    headers: dict[str, str]


async def read_batch(engine: AsyncEngine, limit: int) -> list[OutboxRow]:
    """The oldest ``limit`` rows, in the order they were written."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers)
                .order_by(outbox.c.id)
                .limit(limit)
            )
        ).all()
    return [OutboxRow(r.id, r.topic, r.key, bytes(r.value), orjson.loads(r.headers)) for r in rows]


#: PostgreSQL: the oldest rows, deleted by the statement that reads them; the relay
#: commits once Kafka acknowledged them (a failure or a crash rolls the deletion back).
#: A claim lost in a server crash only publishes its rows again (consumers drop
#: duplicates by event id), so its commit need not wait for the WAL flush.
_CLAIM = (
    "DELETE FROM outbox WHERE id IN"
    " (SELECT id FROM outbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING id, topic, key, value, headers"
)


def _rows(raw: list[tuple[Any, ...]]) -> list[OutboxRow]:
    """Claimed rows, oldest first (``RETURNING`` promises no order)."""
    rows = (
        OutboxRow(int(id_), str(topic), str(key), bytes(value), orjson.loads(headers))
        for id_, topic, key, value, headers in raw
    )
    return sorted(rows, key=lambda row: row.id)


_DELETE = delete(outbox).where(outbox.c.id.in_(bindparam("ids", expanding=True)))


async def delete_rows(commits: GroupCommitter, ids: list[int]) -> None:
    """Delete published rows by id (not ``id <= max``: on PostgreSQL a lower id
    can commit after a higher one, and must not be deleted unpublished).

    Quiet: deleting publishes nothing, so the commit wakes no relay."""

    def work(conn: Connection) -> None:
        conn.execute(_DELETE, {"ids": ids})

    await commits.submit(work, quiet=True)


class Leadership(Protocol):
    """The right to be the one relay that publishes."""

    async def acquire(self) -> bool:
        """Try to become the active relay; False while another one is."""
        ...

    def claim(self, limit: int) -> contextlib.AbstractAsyncContextManager[list[OutboxRow]]:
        """The oldest ``limit`` rows, forgotten when the block ends without error.

        Raises :class:`StoreUnavailable` unless we hold the leadership.
        """
        ...

    async def wait(self, seconds: float) -> None:
        """Sleep until new rows may be there, or ``seconds`` have passed."""
        ...

    def wake(self) -> None:
        """New rows were committed in this process."""
        ...

    async def release(self) -> None:
        """Give the leadership up (safe to call when not held)."""
        ...


class PostgresLeadership:
    """Advisory lock + LISTEN + the claims, on one dedicated psycopg connection.

    A claim runs on the session that holds the lock, so a claim that succeeds
    proves the leadership: no other relay can be active while that session
    lives, and if it dies, its claim's transaction dies with it (the rows stay
    for the next leader). The claim's ``BEGIN``, setting and ``DELETE`` go in
    one pipelined round trip, and the ``COMMIT`` in a second one.
    """

    def __init__(self, url: DatabaseUrl, channel: str) -> None:
        self._conninfo = url.psycopg_conninfo()
        self._channel = channel
        self._conn: Any = None
        self._leading = False
        self._woken = asyncio.Event()

    async def acquire(self) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = await connect_listener(self._conninfo)
            # advisory locks are database-wide: key the lock by schema too, so that
            # Pigeons in different schemas of one database each have their relay
            cursor = await self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (RELAY_LOCK_ID,)
            )
            row = await cursor.fetchone()
            if not (row and row[0]):
                return False
            await self._conn.execute(f"LISTEN {self._channel}")
            self._leading = True
            return True
        except psycopg.Error as exc:
            await self.release()
            raise StoreUnavailable(f"outbox relay cannot reach the database: {exc}") from exc

    @contextlib.asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[list[OutboxRow]]:
        import psycopg

        conn = self._conn
        if conn is None or not self._leading:
            raise StoreUnavailable("outbox relay does not hold the leadership")
        try:
            async with conn.pipeline():
                await conn.execute("BEGIN")
                await conn.execute("SET LOCAL synchronous_commit = off")
                cursor = await conn.execute(_CLAIM, (limit,))
            rows = _rows(await cursor.fetchall())
        except psycopg.Error as exc:
            await self._roll_back()
            raise StoreUnavailable(f"outbox relay lost its database session: {exc}") from exc
        try:
            yield rows
        except BaseException:
            await self._roll_back()
            raise
        try:
            await conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise StoreUnavailable(f"outbox relay lost its database session: {exc}") from exc

    async def _roll_back(self) -> None:
        """Undo a claim (its rows stay); a session too broken for that is closed."""
        try:
            await self._conn.execute("ROLLBACK")
        except Exception:  # the server drops the claim with the session anyway
            await self.release()

    async def wait(self, seconds: float) -> None:
        import psycopg

        if self._woken.is_set():
            self._woken.clear()
            return
        try:
            async for _ in self._conn.notifies(timeout=seconds, stop_after=1):
                pass
        except psycopg.Error as exc:
            raise StoreUnavailable(f"outbox relay lost its database session: {exc}") from exc
        self._woken.clear()

    def wake(self) -> None:
        self._woken.set()

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        self._leading = False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()  # the server drops the advisory lock with the session


#: a claim on a store whose writes go through its group committer: read, then delete
Claimer = Callable[[int], contextlib.AbstractAsyncContextManager[list[OutboxRow]]]


class FileLeadership:
    """An exclusive ``flock`` beside the SQLite file, plus wake-up or polling."""

    def __init__(self, url: DatabaseUrl, poll_interval: float, claimer: Claimer) -> None:
        self._path = url.path.with_name(url.path.name + ".relay.lock")
        self._poll = poll_interval
        self._claimer = claimer
        self._file: IO[str] | None = None
        self._woken = asyncio.Event()

    async def acquire(self) -> bool:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    @contextlib.asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[list[OutboxRow]]:
        if self._file is None:
            raise StoreUnavailable("outbox relay does not hold its lock")
        async with self._claimer(limit) as rows:
            yield rows

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), min(seconds, self._poll))
        self._woken.clear()

    def wake(self) -> None:
        self._woken.set()

    async def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()  # closing the descriptor drops the lock
