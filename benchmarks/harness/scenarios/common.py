"""What the scenarios share: a fresh deployment per measurement, load, deliveries."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from harness.client import NotificationClient, Requests
from harness.designs import Deployment, deployment
from harness.loadgen import RunResult, Schedule, open_loop
from harness.options import BenchOptions
from harness.processes import cpu_percent
from harness.progress import Progress
from harness.sandbox_client import Arrivals, accepted_count, arrivals, set_faults

Result = dict[str, Any]


@dataclass
class Context:
    """Where a run keeps its files, what it was asked, and where it reports progress."""

    options: BenchOptions
    root: Path
    baseline_dir: Path
    progress: Progress
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @asynccontextmanager
    async def deployed(self, design: str, provider_latency_ms: float) -> AsyncIterator[Deployment]:
        """``design`` started afresh with the sandbox at that latency; always stopped after."""
        folder = self.root / f"{next(self._names):03d}-{design}"
        target = deployment(design, folder, self.baseline_dir)
        try:
            self.progress.status(f"starting {design} ...")
            await target.start()
            await set_faults(target.sandbox_url, latency_ms=provider_latency_ms)
            yield target
        finally:
            await asyncio.to_thread(target.stop)


@dataclass
class Measured:
    """An open-loop run, the CPU every process used during it, and what ran alongside."""

    run: RunResult
    tag: str
    cpu_percent_of_one_core: dict[str, float]
    alongside: Result = field(default_factory=dict)


async def load(
    ctx: Context,
    target: Deployment,
    schedule: Schedule,
    tag: str,
    alongside: Callable[[], Awaitable[Result]] | None = None,
) -> Measured:
    """Run ``schedule`` against ``target``, and ``alongside()`` at the same time; add CPU use."""
    requests = Requests(target.api_url, target.api_key, tag)
    cpu0, t0 = target.cpu(), time.perf_counter()
    async with NotificationClient(requests, timeout_seconds=ctx.options.request_timeout) as client:
        loading = asyncio.ensure_future(open_loop(client.send, schedule, progress=ctx.progress))
        try:
            extra = await alongside() if alongside is not None else {}
            run = await loading
        finally:
            loading.cancel()
    ctx.progress.done()
    cpu = cpu_percent(cpu0, target.cpu(), time.perf_counter() - t0)
    target.check_alive()
    return Measured(run, tag, cpu, extra)


async def wait_delivered(
    sandbox_url: str, tag: str, wanted: set[int], within: float, progress: Progress
) -> tuple[Arrivals, float]:
    """Wait until every request in ``wanted`` reached the provider, or ``within`` seconds.

    Returns the arrivals and the wall-clock time the wait ended.
    """
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            count = await accepted_count(session, sandbox_url)
            if count >= len(wanted) or time.monotonic() > deadline:
                found = await arrivals(sandbox_url, tag)
                missing = len(wanted - found.times.keys())
                if not missing or time.monotonic() > deadline:
                    return found, time.time()
            progress.status(f"waiting for deliveries: {count}/{len(wanted)} at the provider")
            await asyncio.sleep(0.1)
