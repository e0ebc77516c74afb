"""Load generators for ``POST /v1/notifications`` and exact percentiles.

Closed loop: N connections each send the next request when the previous one
is answered - it finds the maximum throughput. Open loop: requests are due at
fixed intended times whatever the answers do, and latency runs from the
*intended* time, so a stalled server shows up as latency instead of as fewer
requests (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from harness import loadgen
from harness.client import Requests, connector, post_one, recipients
from harness.loadgen import LATE_DISPATCH_SECONDS, Schedule
from harness.stats import percentile, summarize_ms

__all__ = [
    "Requests",
    "closed_loop",
    "closed_loop_batches",
    "open_loop",
    "percentile",
    "preload",
    "recipients",
    "summarize_ms",
]


@dataclass
class ClosedLoopResult:
    """What a closed-loop run measured inside its window."""

    window_seconds: float
    accepted: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


#: one request of a closed loop: (HTTP status, notifications it got accepted)
_Post = Callable[[aiohttp.ClientSession], Awaitable[tuple[int, int]]]


async def closed_loop(
    requests: Requests, *, connections: int, warmup: float, duration: float
) -> ClosedLoopResult:
    """``connections`` loops posting back to back; counts answers finished in the window."""

    async def post(session: aiohttp.ClientSession) -> tuple[int, int]:
        status = await post_one(session, requests, requests.next_body()[1])
        return status, int(status == 202)

    return await _closed(post, connections=connections, warmup=warmup, duration=duration)


async def closed_loop_batches(
    requests: Requests, *, size: int, connections: int, warmup: float, duration: float
) -> ClosedLoopResult:
    """Like :func:`closed_loop`, posting batches of ``size`` to ``POST /v1/notifications:batch``.

    ``accepted`` counts notifications (each answer's ``accepted``), ``statuses`` answers.
    """
    url = f"{requests.url}:batch"

    async def post(session: aiohttp.ClientSession) -> tuple[int, int]:
        items = b",".join(requests.next_body()[1] for _ in range(size))
        data = b'{"notifications":[' + items + b"]}"
        try:
            async with session.post(url, data=data, headers=requests.headers) as answer:
                status, payload = answer.status, await answer.read()
        except (TimeoutError, aiohttp.ClientError):
            return 0, 0
        return status, int(orjson.loads(payload)["accepted"]) if status == 207 else 0

    return await _closed(
        post, connections=connections, warmup=warmup, duration=duration, request_seconds=60
    )


async def _closed(
    post: _Post, *, connections: int, warmup: float, duration: float, request_seconds: float = 30
) -> ClosedLoopResult:
    """``connections`` loops calling ``post`` back to back; what finished inside the window
    (with the generator's garbage collector paused: :func:`harness.loadgen.collector_paused`)."""
    result = ClosedLoopResult(window_seconds=duration)
    limits = aiohttp.ClientTimeout(total=request_seconds)
    with loadgen.collector_paused():
        async with aiohttp.ClientSession(
            connector=connector(connections), timeout=limits
        ) as session:
            start = time.perf_counter()
            window_start, window_end = start + warmup, start + warmup + duration

            async def loop() -> None:
                while True:
                    sent = time.perf_counter()
                    if sent >= window_end:
                        return
                    status, accepted = await post(session)
                    done = time.perf_counter()
                    if sent >= window_start and done <= window_end:
                        result.statuses[status] += 1
                        result.latencies.append(done - sent)
                        result.accepted += accepted

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


async def open_loop(
    requests: Requests,
    *,
    rate: float,
    warmup: float,
    duration: float,
    connections: int = 512,
    keep_warmup: bool = False,
) -> OpenLoopResult:
    """Send at ``rate``/s at fixed intended times; latency counts from the intended time.

    The comparison scenarios' open loop (:func:`harness.loadgen.open_loop`), posting
    ``requests``' bodies; its samples as the pipeline scenarios read them.
    """
    schedule = Schedule(rate=rate, duration=duration, warmup=warmup)
    tags: dict[int, int] = {}  # schedule index -> the sequence number in the body
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector(connections), timeout=timeout) as session:

        async def send(index: int) -> int:
            tags[index], data = requests.next_body()
            return await post_one(session, requests, data)

        run = await loadgen.open_loop(send, schedule)
    result = OpenLoopResult(rate=rate, window_seconds=duration)
    for sample in sorted(run.samples, key=lambda s: s.seq):
        if keep_warmup or schedule.is_measured(sample.seq):
            result.statuses[sample.status] += 1
            result.latencies.append(sample.latency)
            result.dispatch_lags.append(run.dispatch_lags[sample.seq])
        if sample.status == 202:
            result.accepted_at[tags[sample.seq]] = run.started_at + sample.offset
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
