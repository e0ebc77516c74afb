"""A listening PostgreSQL connection sleeps until its socket has news.

psycopg's async waits look again every 100 ms; the doorbell's and the outbox
relay's connections spend their lives waiting for ``NOTIFY``, so they use
:func:`pigeon.pg_listen.connect_listener`, whose waits wake on the socket only.
These tests run on the real server: a notification still arrives, and the
waiting connection was not woken by psycopg's timer in between.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import psycopg.waiting
import pytest

from pigeon.pg_listen import LISTEN_WAIT_INTERVAL, connect_listener
from tests.integration.postgres import POSTGRES_URL, postgres_or_skip

CHANNEL = "pigeon_test_listen"


class _CountedWaits:
    """Counts psycopg's wait timers that fired (a wait woken by its interval, not its socket)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.intervals: list[float] = []
        self.timer_wakes = 0
        real = psycopg.waiting.wait_async

        async def counted(gen: Any, fileno: int, interval: float = 0.0, timeout: Any = None) -> Any:  # noqa: ASYNC109
            self.intervals.append(interval)
            return await real(gen, fileno, interval=interval, timeout=timeout)

        real_timedout_loop = asyncio.get_running_loop()
        original_call_later = real_timedout_loop.call_later

        def call_later(delay: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(callback, "__name__", "") == "timedout":

                def fired() -> None:
                    self.timer_wakes += 1
                    callback(*args)

                return original_call_later(delay, fired, **kwargs)
            return original_call_later(delay, callback, *args, **kwargs)

        monkeypatch.setattr(psycopg.waiting, "wait_async", counted)
        monkeypatch.setattr(real_timedout_loop, "call_later", call_later)


def _notify() -> None:
    # a blocking connection (in a thread), so that every async wait counted is the listener's
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"NOTIFY {CHANNEL}, 'hello'")


async def _notify_after(seconds: float) -> None:
    await asyncio.sleep(seconds)  # the scenario: a quiet spell, then a commit's NOTIFY
    await asyncio.to_thread(_notify)


async def _wait_for_one(conn: Any) -> list[str]:
    await conn.execute(f"LISTEN {CHANNEL}")
    notifier = asyncio.create_task(_notify_after(0.5))
    payloads = [note.payload async for note in conn.notifies(timeout=30, stop_after=1)]
    await notifier
    return payloads


async def test_a_listener_hears_a_notify_without_waking_on_psycopgs_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    postgres_or_skip()
    waits = _CountedWaits(monkeypatch)
    conn = await connect_listener(POSTGRES_URL)
    try:
        payloads = await _wait_for_one(conn)
    finally:
        await conn.close()
    assert payloads == ["hello"]
    assert waits.intervals and min(waits.intervals) >= LISTEN_WAIT_INTERVAL
    assert waits.timer_wakes == 0


async def test_a_plain_psycopg_connection_ticks_while_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reason for the listener: psycopg's own default wakes every 100 ms."""
    postgres_or_skip()
    waits = _CountedWaits(monkeypatch)
    conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    try:
        payloads = await _wait_for_one(conn)
    finally:
        await conn.close()
    assert payloads == ["hello"]
    assert waits.timer_wakes >= 1
