"""Waking dozing Kafka consumers through PostgreSQL ``LISTEN``/``NOTIFY``.

A Kafka fetch is meant to be a long poll: Apache Kafka answers it as soon as
a message arrives. Not every Kafka-protocol broker does. Tansu (the broker the
tests and benchmarks run) holds every fetch for at least half of its
``fetch.max.wait.ms``, even when records are waiting, so a long poll there adds
hundreds of milliseconds before a new notification is picked up, and a short
poll costs CPU forever.

With a PostgreSQL store (every Kafka deployment has one) the consumers of a
process therefore *doze* once they find nothing: they pause their partitions,
so neither they nor the broker do anything, and wait for a ring. Whoever
publishes (the outbox relay, a consumer producing retries) rings once the
broker has acknowledged: ``NOTIFY pigeon_bus, '<topic>,<topic>'`` on the
store's server, heard by every process that has consumers. A ring only says
"look again"; what is new is always read from Kafka, so a lost or extra ring
costs a fetch, and dozing consumers still look on a slow fallback timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from pigeon.pg_listen import connect_listener

log = logging.getLogger(__name__)

#: the PostgreSQL channel rings travel on (database-wide; an extra ring is harmless)
CHANNEL = "pigeon_bus"
#: a ring's payload stays far below PostgreSQL's 8,000-byte limit; longer, it rings all
_MAX_PAYLOAD = 4000
_ALL = "*"
#: how long a lost listener connection waits before connecting again
RECONNECT_SECONDS = 1.0


class Doorbell(Protocol):
    """Wakes consumers of a topic in any process when a message was published to it."""

    @property
    def listening(self) -> bool:
        """Whether rings reach this process now (consumers doze only then)."""
        ...

    async def subscribe(self, topics: Iterable[str], wake: asyncio.Event) -> None:
        """Set ``wake`` whenever a message is published to one of ``topics``."""
        ...

    def unsubscribe(self, wake: asyncio.Event) -> None:
        """Stop setting ``wake``."""
        ...

    def ring(self, topics: Iterable[str]) -> None:
        """Messages were published to ``topics`` (and acknowledged): wake their consumers."""
        ...

    async def stop(self) -> None:
        """Close the connections."""
        ...


class PostgresDoorbell:
    """A :class:`Doorbell` over one PostgreSQL server.

    Two connections at most, each opened when first needed: a listener in a
    process with consumers, a ringer in a process that publishes. Rings made
    while one is on its way are sent together, as one ``NOTIFY``.
    """

    def __init__(self, conninfo: str, channel: str = CHANNEL) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._wakes: dict[asyncio.Event, frozenset[str]] = {}
        self._listener: Any = None  # psycopg.AsyncConnection
        self._listening = asyncio.Event()
        self._listen_task: asyncio.Task[None] | None = None
        self._ringer: Any = None  # psycopg.AsyncConnection
        self._to_ring: set[str] = set()
        self._ring_task: asyncio.Task[None] | None = None
        self._ring_failed = False

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def listener_pid(self) -> int | None:
        """The server process of the listening connection, if connected (terminating it
        with ``pg_terminate_backend`` is how the tests cut the doorbell off)."""
        listener = self._listener
        return int(listener.info.backend_pid) if listener is not None else None

    # -- listening ---------------------------------------------------------
    async def subscribe(self, topics: Iterable[str], wake: asyncio.Event) -> None:
        self._wakes[wake] = frozenset(topics)
        if self._listen_task is None or self._listen_task.done():
            self._listen_task = asyncio.create_task(self._listen(), name="pigeon-bus-doorbell")
        # the first connection is waited for (bounded), so consumers start dozing at once
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5.0)

    def unsubscribe(self, wake: asyncio.Event) -> None:
        self._wakes.pop(wake, None)

    async def _listen(self) -> None:
        import psycopg

        while self._wakes:
            try:
                conn = await connect_listener(self._conninfo)
                self._listener = conn
                await conn.execute(f"LISTEN {self._channel}")
                self._listening.set()
                self._wake_all()  # anything published while nobody listened
                async for note in conn.notifies():
                    self._wake(note.payload.split(","))
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "Kafka consumers' doorbell (PostgreSQL): %s; fetching without it until "
                    "it is back",
                    exc,
                )
            finally:
                self._listening.clear()
                self._wake_all()  # dozing consumers go back to fetching
                listener, self._listener = self._listener, None
                if listener is not None:
                    with contextlib.suppress(Exception):
                        await listener.close()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _wake(self, topics: list[str]) -> None:
        rung = set(topics)
        for wake, wanted in self._wakes.items():
            if _ALL in rung or rung & wanted:
                wake.set()

    def _wake_all(self) -> None:
        for wake in self._wakes:
            wake.set()

    # -- ringing -----------------------------------------------------------
    def ring(self, topics: Iterable[str]) -> None:
        self._to_ring.update(topics)
        if self._ring_task is None or self._ring_task.done():
            self._ring_task = asyncio.create_task(self._send(), name="pigeon-bus-ring")

    async def _send(self) -> None:
        import psycopg

        while self._to_ring:
            topics, self._to_ring = sorted(self._to_ring), set()
            payload = ",".join(topics)
            if len(payload) > _MAX_PAYLOAD:
                payload = _ALL
            try:
                if self._ringer is None or self._ringer.closed:
                    self._ringer = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, connect_timeout=5
                    )
                await self._ringer.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))
                self._ring_failed = False
            except (psycopg.Error, OSError) as exc:
                if not self._ring_failed:  # once per outage, not once per message
                    log.warning(
                        "Kafka consumers' doorbell (PostgreSQL) cannot ring: %s; "
                        "they pick messages up on their fallback fetch",
                        exc,
                    )
                self._ring_failed = True
                ringer, self._ringer = self._ringer, None
                if ringer is not None:
                    with contextlib.suppress(Exception):
                        await ringer.close()
                return

    async def stop(self) -> None:
        self._wakes.clear()
        for task in (self._listen_task, self._ring_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._listen_task = self._ring_task = None
        for conn in (self._listener, self._ringer):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._listener = self._ringer = None
        self._listening.clear()
