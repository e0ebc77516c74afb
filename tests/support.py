"""Helpers shared by the test suites."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


async def eventually(
    condition: Callable[[], bool], within: float = 10.0, interval: float = 0.01
) -> None:
    """Wait until ``condition()`` holds, failing the test after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
