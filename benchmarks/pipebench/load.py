"""Load generators for ``POST /v1/notifications`` and exact percentiles.

Closed loop: N connections each send the next request when the previous one
is answered - it finds the maximum throughput. Open loop: requests are due at
fixed intended times whatever the answers do, and latency runs from the
*intended* time, so a stalled server shows up as latency instead of as fewer
requests (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import orjson

AREA_CODES = ("212", "312", "415", "503", "617", "646", "206", "303", "512", "702")
LATE_DISPATCH_SECONDS = 0.005


def recipients(count: int = 2000, seed: int = 7) -> list[str]:
    """Valid, varied US numbers in E.164 (all pass libphonenumber's validation)."""
    rng = random.Random(seed)
    return [
        f"+1{rng.choice(AREA_CODES)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        for _ in range(count)
    ]


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples (exact, no interpolation)."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least 1
    return ordered[min(len(ordered), int(rank)) - 1]


def summarize_ms(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in milliseconds of samples in seconds."""
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50_ms": percentile(ordered, 50) * 1000,
        "p90_ms": percentile(ordered, 90) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "p999_ms": percentile(ordered, 99.9) * 1000,
        "max_ms": ordered[-1] * 1000,
        "mean_ms": sum(ordered) / len(ordered) * 1000,
    }


class Requests:
    """Bodies for ``POST /v1/notifications``: varied recipients, numbered bodies."""

    def __init__(self, api_url: str, api_key: str, tag: str) -> None:
        self.url = f"{api_url}/v1/notifications"
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._tag = tag
        self._numbers = itertools.cycle(recipients())
        self._seq = itertools.count()

    def next_body(self) -> tuple[int, bytes]:
        """The next request's sequence number and JSON body."""
        seq = next(self._seq)
        body = {
            "channel": "sms",
            "to": next(self._numbers),
            "body": f"Your Pigeon code is {seq % 1000000:06d} [{self._tag}:{seq}]",
        }
        return seq, orjson.dumps(body)


def connector(limit: int) -> aiohttp.TCPConnector:
    """One shared keep-alive pool for every request of a run."""
    return aiohttp.TCPConnector(limit=limit, force_close=False, ttl_dns_cache=None)


async def post_one(session: aiohttp.ClientSession, requests: Requests, data: bytes) -> int:
    """POST one notification; returns the status, or 0 for a transport error."""
    try:
        async with session.post(requests.url, data=data, headers=requests.headers) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


@dataclass
class ClosedLoopResult:
    """What a closed-loop run measured inside its window."""

    window_seconds: float
    accepted: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


async def closed_loop(
    requests: Requests, *, connections: int, warmup: float, duration: float
) -> ClosedLoopResult:
    """``connections`` loops posting back to back; counts answers finished in the window."""
    result = ClosedLoopResult(window_seconds=duration)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector(connections), timeout=timeout) as session:
        start = time.perf_counter()
        window_start, window_end = start + warmup, start + warmup + duration

        async def loop() -> None:
            while True:
                _, data = requests.next_body()
                sent = time.perf_counter()
                if sent >= window_end:
                    return
                status = await post_one(session, requests, data)
                done = time.perf_counter()
                if sent >= window_start and done <= window_end:
                    result.statuses[status] += 1
                    result.latencies.append(done - sent)
                    result.accepted += status == 202

        await asyncio.gather(*(loop() for _ in range(connections)))
    return result


@dataclass
class OpenLoopResult:
    """What an open-loop run measured (warm-up excluded unless ``keep_warmup``)."""

    rate: float
    window_seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    dispatch_lags: list[float] = field(default_factory=list)
    #: wall-clock intended send time of each accepted request, by sequence number
    accepted_at: dict[int, float] = field(default_factory=dict)

    @property
    def late_dispatches(self) -> int:
        """Requests the generator itself sent more than 5 ms after their intended time."""
        return sum(lag > LATE_DISPATCH_SECONDS for lag in self.dispatch_lags)


def schedule(rate: float, seconds: float) -> Iterator[float]:
    """Intended send offsets: one every ``1/rate`` seconds for ``seconds``."""
    return (i / rate for i in range(round(rate * seconds)))


async def open_loop(
    requests: Requests,
    *,
    rate: float,
    warmup: float,
    duration: float,
    connections: int = 512,
    keep_warmup: bool = False,
) -> OpenLoopResult:
    """Send at ``rate``/s at fixed intended times; latency counts from the intended time."""
    result = OpenLoopResult(rate=rate, window_seconds=duration)
    timeout = aiohttp.ClientTimeout(total=30)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector(connections), timeout=timeout) as session:
        start = time.perf_counter() + 0.05
        wall_offset = time.time() - time.perf_counter()

        async def one(intended: float, measured: bool) -> None:
            seq, data = requests.next_body()
            status = await post_one(session, requests, data)
            if measured:
                result.statuses[status] += 1
                result.latencies.append(time.perf_counter() - intended)
            if status == 202:
                result.accepted_at[seq] = intended + wall_offset

        for offset in schedule(rate, warmup + duration):
            intended = start + offset
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            measured = keep_warmup or offset >= warmup
            if measured:
                result.dispatch_lags.append(time.perf_counter() - intended)
            task = asyncio.create_task(one(intended, measured))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    return result


async def preload(requests: Requests, count: int, *, connections: int) -> dict[str, object]:
    """POST until ``count`` notifications are accepted, as fast as possible."""
    statuses: Counter[int] = Counter()
    accepted = 0
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector(connections), timeout=timeout) as session:
        start = time.perf_counter()

        async def loop() -> None:
            nonlocal accepted
            while accepted < count:
                _, data = requests.next_body()
                status = await post_one(session, requests, data)
                statuses[status] += 1
                accepted += status == 202

        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return {
        "accepted": accepted,
        "seconds": elapsed,
        "accepted_per_s": accepted / elapsed,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }
