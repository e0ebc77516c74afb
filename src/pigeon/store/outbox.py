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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

import orjson
from sqlalchemy import bindparam, delete, select, text
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
#: commits once Kafka acknowledged them (a failure or a crash rolls the deletion back)
_CLAIM = text(
    "DELETE FROM outbox WHERE id IN"
    " (SELECT id FROM outbox ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " RETURNING id, topic, key, value, headers"
)
#: a claim lost in a server crash only publishes its rows again (consumers drop
#: duplicates by event id), so its commit need not wait for the WAL flush
_NO_FLUSH = text("SET LOCAL synchronous_commit = off")


@contextlib.asynccontextmanager
async def claim_postgres(engine: AsyncEngine, limit: int) -> AsyncIterator[list[OutboxRow]]:
    """The oldest ``limit`` rows (PostgreSQL), deleted when the block ends without error.

    One statement reads and deletes them, in a transaction that stays open
    while they are published: one round trip and one commit per batch instead
    of a read, a delete and their commits.
    """
    async with engine.begin() as conn:
        await conn.execute(_NO_FLUSH)
        rows = (await conn.execute(_CLAIM, {"limit": limit})).all()
        yield sorted(
            (
                OutboxRow(r.id, r.topic, r.key, bytes(r.value), orjson.loads(r.headers))
                for r in rows
            ),
            key=lambda row: row.id,  # RETURNING promises no order
        )


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

    async def confirm(self) -> None:
        """Raise unless we still hold the leadership (checked before each batch)."""
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
    """Advisory lock + LISTEN on one dedicated psycopg connection."""

    def __init__(self, url: DatabaseUrl, channel: str) -> None:
        self._conninfo = url.psycopg_conninfo()
        self._channel = channel
        self._conn: Any = None
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
            return True
        except psycopg.Error as exc:
            await self.release()
            raise StoreUnavailable(f"outbox relay cannot reach the database: {exc}") from exc

    async def confirm(self) -> None:
        import psycopg

        try:
            await self._conn.execute("SELECT 1")
        except (psycopg.Error, AttributeError) as exc:
            raise StoreUnavailable(f"outbox relay lost its database session: {exc}") from exc

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
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()  # the server drops the advisory lock with the session


class FileLeadership:
    """An exclusive ``flock`` beside the SQLite file, plus wake-up or polling."""

    def __init__(self, url: DatabaseUrl, poll_interval: float) -> None:
        self._path = url.path.with_name(url.path.name + ".relay.lock")
        self._poll = poll_interval
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

    async def confirm(self) -> None:
        if self._file is None:
            raise StoreUnavailable("outbox relay does not hold its lock")

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
