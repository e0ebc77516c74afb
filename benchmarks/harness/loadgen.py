"""An open-loop load generator: requests leave at fixed intended times.

Request ``i`` is due ``i / rate`` seconds after the start, whatever the
answers do. Latency runs from that *intended* time, not from when the request
actually left, so a stalled server (or a stalled generator) shows up as
latency instead of as fewer requests: no coordinated omission. Requests due
during the warm-up are sent and answered like the others but left out of the
figures. Latencies go into HDR histograms; every request is also kept as a
:class:`Sample` for timelines and for matching deliveries to requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.stats import LatencyHistogram

#: pseudo status codes for requests that got no HTTP answer
CONNECTION_ERROR = 0
TIMED_OUT = -1
#: the generator itself counts as late when it sends this long after the intended time
LATE_DISPATCH_SECONDS = 0.005

Send = Callable[[int], Awaitable[int]]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in the load generator while it measures.

    A run's generator holds every earlier measurement's samples: a full
    collection walked 150,000+ objects for 75-140 ms, and every request due
    meanwhile left that much late, which the open loop rightly counts as latency
    of the system under test (measured: the worst accept latency of a 30 s
    Kafka ``pigeon run`` loop at 420/s, 131-142 ms, was the generator's own
    128 ms collection). The heap is frozen and collection is off for the run;
    afterwards it is on again and the run's garbage is collected.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
        gc.collect()


def is_success(status: int) -> bool:
    """A 2xx answer."""
    return 200 <= status < 300


@dataclass(frozen=True)
class Schedule:
    """When each request is due: ``rate`` per second for ``warmup + duration`` seconds."""

    rate: float
    duration: float
    warmup: float = 0.0

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"the arrival rate must be a positive number, got {self.rate}")
        if self.duration < 0 or self.warmup < 0:
            raise ValueError("durations cannot be negative")

    @property
    def total_seconds(self) -> float:
        """Warm-up plus measured time."""
        return self.warmup + self.duration

    @property
    def count(self) -> int:
        """Requests sent in all."""
        return round(self.rate * self.total_seconds)

    @property
    def warmup_count(self) -> int:
        """Requests due before the warm-up ends (sent, not measured)."""
        return min(self.count, math.ceil(self.rate * self.warmup - 1e-9))

    @property
    def measured_count(self) -> int:
        """Requests that count in the figures."""
        return self.count - self.warmup_count

    def offset(self, index: int) -> float:
        """Seconds after the start at which request ``index`` is due."""
        return index / self.rate

    def is_measured(self, index: int) -> bool:
        """Whether request ``index`` is due after the warm-up."""
        return index >= self.warmup_count

    def offsets(self) -> Iterator[float]:
        """Every intended send time, in order."""
        return (self.offset(i) for i in range(self.count))


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it was due (seconds after the start), its status and latency."""

    seq: int
    offset: float
    status: int
    latency: float


class ProgressSink(Protocol):
    """Where a run reports how far it got (see :mod:`harness.progress`)."""

    def update(self, run: RunResult, elapsed: float) -> None:
        """Called a few times a second while requests go out."""
        ...


@dataclass
class RunResult:
    """What an open-loop run measured."""

    schedule: Schedule
    #: wall-clock time (``time.time()``) of offset 0, to line up with other clocks
    started_at: float = 0.0
    dispatched: int = 0
    samples: list[Sample] = field(default_factory=list)
    #: statuses of the measured requests
    statuses: Counter[int] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    dispatch_lag: LatencyHistogram = field(default_factory=LatencyHistogram)
    late_dispatches: int = 0
    #: how late each request (warm-up included) was sent, by sequence
    dispatch_lags: dict[int, float] = field(default_factory=dict)

    def record(self, seq: int, offset: float, status: int, latency: float) -> None:
        """One answered (or failed) request; 2xx latencies of measured ones go to the histogram."""
        self.samples.append(Sample(seq, offset, status, latency))
        if self.schedule.is_measured(seq):
            self.statuses[status] += 1
            if is_success(status):
                self.latency.record(latency)

    def record_dispatch(self, seq: int, lag: float) -> None:
        """How late the generator sent request ``seq``."""
        self.dispatched += 1
        self.dispatch_lags[seq] = lag
        if self.schedule.is_measured(seq):
            self.dispatch_lag.record(lag)
            self.late_dispatches += lag > LATE_DISPATCH_SECONDS

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        return self.dispatched - len(self.samples)

    @property
    def ok(self) -> int:
        """Measured requests answered 2xx."""
        return sum(n for s, n in self.statuses.items() if is_success(s))

    @property
    def timeouts(self) -> int:
        """Measured requests that got no answer in time."""
        return self.statuses[TIMED_OUT]

    @property
    def errors(self) -> int:
        """Measured requests answered with an error or not reached (timeouts excluded)."""
        return sum(self.statuses.values()) - self.ok - self.timeouts

    def succeeded(self) -> dict[int, float]:
        """Wall-clock intended time of every 2xx request (warm-up included), by sequence."""
        return {s.seq: self.started_at + s.offset for s in self.samples if is_success(s.status)}

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures of the measured window."""
        measured = self.schedule.measured_count
        return {
            "rate_per_s": self.schedule.rate,
            "warmup_s": self.schedule.warmup,
            "duration_s": self.schedule.duration,
            "sent": measured,
            "ok": self.ok,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "ok_fraction": self.ok / measured if measured else math.nan,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "latency_ms": self.latency.to_json(),
            "dispatch_lag_ms": self.dispatch_lag.summary(),
            "late_dispatches_over_5ms": self.late_dispatches,
        }


async def open_loop(
    send: Send,
    schedule: Schedule,
    *,
    progress: ProgressSink | None = None,
    progress_every: float = 0.25,
) -> RunResult:
    """Call ``send(seq)`` at ``schedule``'s intended times; wait for every answer (with
    the generator's garbage collector paused: :func:`collector_paused`)."""
    with collector_paused():
        return await _open_loop(send, schedule, progress, progress_every)


async def _open_loop(
    send: Send, schedule: Schedule, progress: ProgressSink | None, progress_every: float
) -> RunResult:
    result = RunResult(schedule)
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.05
    result.started_at = time.time() + (start - time.perf_counter())
    next_report = start

    async def one(seq: int, intended: float) -> None:
        status = await send(seq)
        result.record(seq, intended - start, status, time.perf_counter() - intended)

    for seq in range(schedule.count):
        intended = start + schedule.offset(seq)
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.perf_counter()
        result.record_dispatch(seq, now - intended)
        task = asyncio.create_task(one(seq, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if progress is not None and now >= next_report:
            progress.update(result, now - start)
            next_report = now + progress_every
    while tasks:
        if progress is not None:
            progress.update(result, time.perf_counter() - start)
        await asyncio.wait(set(tasks), timeout=progress_every)
    if progress is not None:
        progress.update(result, time.perf_counter() - start)
    return result
