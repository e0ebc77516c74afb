"""Helpers shared by the test suites."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web


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
        await asyncio.sleep(interval)


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
