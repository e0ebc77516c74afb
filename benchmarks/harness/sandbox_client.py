"""Talking to the sandbox provider during a benchmark: faults, counters and the inbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
import orjson

from harness.client import parse_tag


@dataclass
class Arrivals:
    """When each tagged request's SMS reached the provider (wall clock), and duplicates."""

    times: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0

    def __len__(self) -> int:
        return len(self.times)


async def set_faults(sandbox_url: str, **faults: float | bool) -> None:
    """Change the sandbox's faults at run time (e.g. ``latency_ms=200``)."""
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{sandbox_url}/sandbox/faults", data=orjson.dumps(faults)) as response,
    ):
        if response.status != 200:
            raise RuntimeError(
                f"the sandbox refused faults {faults}: HTTP {response.status} "
                f"{(await response.text())[:200]}"
            )


async def accepted_count(session: aiohttp.ClientSession, sandbox_url: str) -> int:
    """Messages the sandbox accepted so far (0 while it does not answer)."""
    try:
        async with session.get(f"{sandbox_url}/sandbox/stats") as response:
            return int((await response.json())["accepted"])
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
        return 0


async def arrivals(sandbox_url: str, tag: str) -> Arrivals:
    """Arrival time of every message of the run tagged ``tag``, by request sequence."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sandbox_url}/sandbox/messages") as response,
    ):
        messages = orjson.loads(await response.read())["messages"]
    found = Arrivals()
    for message in messages:
        marker = parse_tag(message["body"])
        if marker is None or marker[0] != tag:
            continue
        at = datetime.fromisoformat(message["date_created"]).timestamp()
        seq = marker[1]
        if seq in found.times:
            found.duplicates += 1
            found.times[seq] = min(found.times[seq], at)
        else:
            found.times[seq] = at
    return found


async def wait_for_inbox(
    sandbox_url: str,
    count: int,
    within: float,
    *,
    check: Callable[[], None] = lambda: None,
    interval: float = 0.05,
) -> int:
    """Poll the sandbox until it accepted ``count`` messages or ``within`` seconds passed.

    ``check`` runs at every poll (e.g. to fail at once when a process died).
    """
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            arrived = await accepted_count(session, sandbox_url)
            if arrived >= count or time.monotonic() > deadline:
                return arrived
            check()
            await asyncio.sleep(interval)
