"""The open-loop generator's arithmetic: when requests are due, what counts, what is reported."""

from __future__ import annotations

import gc
import math
import weakref

import pytest

from harness.loadgen import (
    CONNECTION_ERROR,
    TIMED_OUT,
    RunResult,
    Schedule,
    collector_paused,
    is_success,
    open_loop,
)


def test_a_schedule_sends_rate_times_seconds_requests_evenly_spaced() -> None:
    """100/s for 2 s plus a 0.5 s warm-up is 250 requests, one every 10 ms from 0."""
    schedule = Schedule(rate=100, duration=2, warmup=0.5)
    assert schedule.count == 250
    assert schedule.warmup_count == 50
    assert schedule.measured_count == 200
    offsets = list(schedule.offsets())
    assert offsets[:3] == [0.0, 0.01, 0.02]
    assert offsets[-1] == pytest.approx(2.49)


def test_requests_due_during_the_warm_up_are_not_measured() -> None:
    """Request 49 is due at 0.49 s (warm-up), request 50 at 0.5 s (measured)."""
    schedule = Schedule(rate=100, duration=1, warmup=0.5)
    assert not schedule.is_measured(49)
    assert schedule.is_measured(50)


def test_a_fractional_rate_rounds_the_request_count() -> None:
    """0.5/s for 3 s is 2 requests (due at 0 s and 2 s); no warm-up measures them all."""
    schedule = Schedule(rate=0.5, duration=3)
    assert schedule.count == 2
    assert list(schedule.offsets()) == [0.0, 2.0]
    assert schedule.measured_count == 2


@pytest.mark.parametrize("rate", [0, -5, math.inf, math.nan])
def test_a_schedule_needs_a_positive_finite_rate(rate: float) -> None:
    """Zero, negative, infinite and NaN rates are refused."""
    with pytest.raises(ValueError, match="rate"):
        Schedule(rate=rate, duration=1)


def test_only_2xx_answers_are_successes() -> None:
    """200, 201 and 202 succeed; 3xx, 4xx, 5xx and the pseudo statuses do not."""
    assert [is_success(s) for s in (200, 202, 299)] == [True, True, True]
    assert [is_success(s) for s in (301, 422, 503, CONNECTION_ERROR, TIMED_OUT)] == [False] * 5


def test_a_run_counts_ok_errors_and_timeouts_of_measured_requests_only() -> None:
    """Warm-up requests are kept as samples but left out of statuses and the histogram."""
    run = RunResult(Schedule(rate=10, duration=1, warmup=0.2))
    run.record(0, 0.0, 503, 0.5)  # warm-up: ignored in the figures
    run.record(1, 0.1, 202, 0.5)  # warm-up
    run.record(2, 0.2, 202, 0.010)
    run.record(3, 0.3, 202, 0.030)
    run.record(4, 0.4, 503, 0.001)
    run.record(5, 0.5, CONNECTION_ERROR, 0.001)
    run.record(6, 0.6, TIMED_OUT, 30.0)
    assert (run.ok, run.errors, run.timeouts) == (2, 2, 1)
    assert run.latency.count == 2  # only the 2xx answers' latencies
    assert run.latency.max_ms == pytest.approx(30, rel=1e-3)
    assert len(run.samples) == 7
    assert set(run.succeeded()) == {1, 2, 3}


def test_the_summary_reports_the_measured_window() -> None:
    """Sent is the measured count; the ok share, statuses and percentiles come with it."""
    run = RunResult(Schedule(rate=4, duration=1, warmup=0.5), started_at=1000.0)
    for seq in range(6):
        run.record(seq, seq / 4, 202 if seq != 5 else 500, 0.002 * (seq + 1))
    summary = run.summary()
    assert summary["sent"] == 4
    assert summary["ok"] == 3
    assert summary["ok_fraction"] == pytest.approx(0.75)
    assert summary["statuses"] == {"202": 3, "500": 1}
    assert summary["latency_ms"]["count"] == 3
    assert summary["latency_ms"]["max_ms"] == pytest.approx(10, rel=1e-3)
    assert run.succeeded()[0] == 1000.0


def test_dispatches_later_than_5_ms_are_counted_as_late() -> None:
    """The generator's own lag is kept for measured requests; over 5 ms counts as late."""
    run = RunResult(Schedule(rate=10, duration=1, warmup=0.1))
    run.record_dispatch(0, 0.5)  # warm-up: not counted
    run.record_dispatch(1, 0.001)
    run.record_dispatch(2, 0.006)
    assert run.late_dispatches == 1
    assert run.dispatch_lag.count == 2
    assert run.in_flight == 3


async def test_open_loop_sends_every_scheduled_request_once_and_waits_for_all_answers() -> None:
    """Every sequence number is sent exactly once and every answer is recorded."""
    sent: list[int] = []

    async def send(seq: int) -> int:
        sent.append(seq)
        return 202 if seq % 4 else 503

    schedule = Schedule(rate=400, duration=0.05, warmup=0.025)
    run = await open_loop(send, schedule)
    assert sorted(sent) == list(range(schedule.count))
    assert len(run.samples) == schedule.count
    assert run.ok + run.errors == schedule.measured_count
    assert run.in_flight == 0
    assert run.started_at > 0


class Cycle:
    """An object that refers to itself."""

    me: object = None


async def test_the_generator_collects_no_garbage_while_it_sends_and_all_of_it_after() -> None:
    """A collection in the generator would delay every request due meanwhile: none runs
    during a run, the collector is on again afterwards, and the run's cycles are freed."""
    during: list[bool] = []
    cycles: list[weakref.ref[Cycle]] = []

    async def send(seq: int) -> int:
        during.append(gc.isenabled())
        cycle = Cycle()
        cycle.me = cycle  # garbage only a collection frees
        cycles.append(weakref.ref(cycle))
        return 202

    assert gc.isenabled()
    await open_loop(send, Schedule(rate=400, duration=0.05, warmup=0.0))
    assert during and not any(during)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert cycles and all(ref() is None for ref in cycles)  # collected when the run ended


def test_a_collector_off_before_stays_off_after() -> None:
    """The guard restores what it found, also when the body fails."""
    gc.disable()
    try:
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("boom")
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()
