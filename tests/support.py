"""Helpers shared by the test suites."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from harness.processes import free_port

if TYPE_CHECKING:
    from pigeon.bootstrap import Pigeon

__all__ = ["Clock", "embedded_pigeon", "eventually", "free_port", "serve_http"]


class Clock:
    """A monotonic clock the test moves by hand (``clock.now += 0.5``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def eventually(
    condition: Callable[[], bool] | Callable[[], Awaitable[bool]],
    within: float = 10.0,
    interval: float = 0.01,
) -> None:
    """Wait until ``condition()`` (plain or async) holds, failing after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)  # the one wait of the tests: between looks


async def serve_http(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, str]:
    """``handle`` answering every path on a free 127.0.0.1 port: ``(runner, base URL)``.

    The caller stops it with ``await runner.cleanup()``.
    """
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def embedded_pigeon(data_dir: Path) -> AsyncIterator[Pigeon]:
    """Pigeon on the embedded stack in ``data_dir``, wired as ``pigeon run`` wires it,
    started; stopped on exit."""
    from pigeon.bootstrap import build  # the whole application: only for the tests that ask
    from pigeon.config import Settings

    app = build(Settings(data_dir=data_dir, auto_migrate=True))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
