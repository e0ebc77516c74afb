"""Helpers shared by the test suites."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from aiohttp import web

from harness.processes import free_port

__all__ = ["eventually", "free_port", "serve_http"]


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
