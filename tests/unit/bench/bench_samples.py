"""Synthetic runs and reports for the bench unit tests: known inputs, known figures."""

from __future__ import annotations

from typing import Any

from harness.loadgen import RunResult, Schedule
from harness.options import BenchOptions
from harness.sandbox_client import Arrivals
from harness.scenarios.outage import summarize_outage
from harness.scenarios.throughput import conclude, step_figures
from harness.targets import evaluate

START = 1000.0
#: the sender is stopped 3 s into a 10 s run, restarted at 6 s and ready at 6.5 s
EVENTS = {
    "stopped_at": START + 3.0,
    "stop_done_at": START + 3.1,
    "restarted_at": START + 6.0,
    "ready_at": START + 6.5,
}


def outage_run(design: str) -> tuple[RunResult, Arrivals]:
    """10/s for 10 s. Pigeon: all 202, those sent while down delivered after the restart.

    Direct: requests due while the SMS service is down (3 s to 6.5 s) fail with 503.
    """
    run = RunResult(Schedule(rate=10, duration=10), started_at=START)
    found = Arrivals()
    for seq in range(100):
        offset = seq / 10
        down = 3.0 <= offset < 6.5
        if design == "direct":
            status = 503 if down else 200
            run.record(seq, offset, status, 0.001 if down else 0.21)
            if not down:
                found.times[seq] = START + offset + 0.21
        else:
            run.record(seq, offset, 202, 0.005)
            waited = 3.0 <= offset < 6.0
            found.times[seq] = START + (6.5 + (seq - 30) * 0.01 if waited else offset + 0.3)
    return run, found


def throughput_step(rate: float, *, ok_every: int = 0) -> RunResult:
    """A step at ``rate`` for 2 s (after 1 s warm-up); every ``ok_every``-th request fails."""
    run = RunResult(Schedule(rate=rate, duration=2, warmup=1), started_at=START)
    for seq in range(run.schedule.count):
        failed = ok_every and seq % ok_every == 0
        run.record(seq, seq / rate, 503 if failed else 202, 0.004)
    return run


def arrivals_for(run: RunResult, share: float, delay: float = 0.2) -> Arrivals:
    """The first ``share`` of the run's 2xx requests delivered ``delay`` after being due."""
    accepted = sorted(run.succeeded().items())
    kept = accepted[: round(len(accepted) * share)]
    return Arrivals(times={seq: at + delay for seq, at in kept})


def sample_report(options: BenchOptions) -> dict[str, Any]:
    """A whole report built from synthetic runs by the real summarizing functions."""

    def latency_step(design: str, provider: float, ms: float) -> dict[str, Any]:
        run = RunResult(Schedule(rate=10, duration=1), started_at=START)
        for seq in range(10):
            run.record(seq, seq / 10, 202, ms / 1000)
        return {"design": design, "provider_latency_ms": provider, **run.summary()}

    outage = {}
    for design in ("direct", "pigeon"):
        run, found = outage_run(design)
        outage[design] = summarize_outage(run, found, EVENTS)
    direct_steps = []
    for rate, ok_every in ((25, 0), (50, 0), (100, 2)):
        run = throughput_step(rate, ok_every=ok_every)
        direct_steps.append(step_figures(run, arrivals_for(run, 1.0), options))
    pigeon_steps = []
    for rate, share in ((25, 1.0), (50, 1.0), (100, 0.5)):
        run = throughput_step(rate)
        pigeon_steps.append(step_figures(run, arrivals_for(run, share), options))
    scenarios: dict[str, Any] = {
        "latency": {
            "rate_per_s": 10.0,
            "steps": [
                latency_step("direct", 0.0, 4.0),
                latency_step("pigeon", 0.0, 3.0),
                latency_step("direct", 200.0, 205.0),
                latency_step("pigeon", 200.0, 7.5),
            ],
        },
        "outage": {
            "rate_per_s": 10.0,
            "provider_latency_ms": 200.0,
            "run_s": 10.0,
            "outage_at_s": 3.0,
            "outage_length_s": 3.0,
            "designs": outage,
        },
        "throughput": {
            "provider_latency_ms": 200.0,
            "slo_ms": options.slo_ms,
            "min_ok_fraction": options.min_ok_fraction,
            "keep_up_fraction": options.keep_up_fraction,
            "designs": {"direct": conclude(direct_steps), "pigeon": conclude(pigeon_steps)},
        },
    }
    return {
        "environment": {
            "date": "2026-11-26T12:00:00+00:00",
            "cpu_count": 2,
            "python": "3.11.7",
            "implementation": "CPython",
            "platform": "Linux-test",
            "sqlite": "3.40.1",
            "packages": {"pigeon-notify": "0.1.0", "matplotlib": "3.11.2"},
            "source": {"commit": "abcdef0123456789", "src_changed_files": 0},
        },
        "options": options.to_json(),
        "scenarios": scenarios,
        "targets": [t.to_json() for t in evaluate(scenarios)],
    }
