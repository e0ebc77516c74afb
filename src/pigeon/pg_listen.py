"""A PostgreSQL connection that waits for ``NOTIFY`` without ticking.

psycopg's async waits wake every 100 ms (``_WAIT_INTERVAL``) to look for an
interrupt, even when the socket is quiet. A connection that spends its life in
``LISTEN`` (the Kafka consumers' doorbell, the outbox relay's leadership) would
so wake its process ten times a second for nothing: in an idle ``pigeon run``
on Kafka those ticks were a fifth of its CPU. An interrupt reaches an asyncio
program through its loop anyway, and the socket still wakes the wait at once
when a notification, an answer or the server's goodbye arrives; so these
connections wait up to :data:`LISTEN_WAIT_INTERVAL` between looks.

psycopg is imported only when a connection is opened (it is an optional extra).
"""

from __future__ import annotations

from typing import Any

#: the longest a wait on a quiet listening connection sleeps before it looks again
LISTEN_WAIT_INTERVAL = 5.0


async def connect_listener(conninfo: str, *, connect_timeout: int = 5) -> Any:
    """An autocommit ``psycopg.AsyncConnection`` whose waits wake only on its socket.

    Typed ``Any`` because psycopg is optional; it is a ``psycopg.AsyncConnection``.
    """
    import psycopg

    class _ListeningConnection(psycopg.AsyncConnection[Any]):
        async def wait(
            self,
            gen: Any,
            interval: float = LISTEN_WAIT_INTERVAL,
            timeout: Any = None,  # noqa: ASYNC109 (psycopg's signature)
        ) -> Any:
            return await super().wait(
                gen, interval=max(interval, LISTEN_WAIT_INTERVAL), timeout=timeout
            )

    return await _ListeningConnection.connect(
        conninfo, autocommit=True, connect_timeout=connect_timeout
    )
