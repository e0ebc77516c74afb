"""Throughput: the highest arrival rate each design sustains, with the provider adding latency.

Steps double the rate from ``start_rate`` until one fails (or ``max_rate``),
then bisect between the last good and the first bad rate ``refine_steps``
times. Each step runs on a fresh deployment. A step is *sustained* when at
least ``min_ok_fraction`` of its requests are answered 2xx and their p99
stays within ``slo_ms``; delivery *keeps up* when the SMS reaching the
provider within ``KEEP_UP_GRACE_S`` of the window's end come to
``keep_up_fraction`` of the requests it accepted in the window (a steady delay
is fine, a growing backlog is not).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from harness.loadgen import RunResult, Schedule, is_success
from harness.options import BenchOptions, run_label, run_stack
from harness.sandbox_client import Arrivals, arrivals
from harness.scenarios.common import Context, Result, load
from harness.stats import summarize_ms

TAG = "tput"
KEEP_UP_GRACE_S = 2.0


def judge(step: Result, opts: BenchOptions) -> tuple[bool, bool]:
    """(sustained, delivery keeps up) for one step's figures."""
    p99 = step["latency_ms"].get("p99_ms", math.inf)
    sustained = step["ok_fraction"] >= opts.min_ok_fraction and p99 <= opts.slo_ms
    keeps_up = step["delivered_fraction"] >= opts.keep_up_fraction
    return sustained, keeps_up


def next_rate(rate: float, good: float | None, bad: float | None) -> float:
    """Where the search goes next: double until a failure, halve until a success, then bisect."""
    if bad is None:
        return rate * 2
    if good is None:
        return rate / 2
    return (good + bad) / 2


def conclude(steps: list[Result]) -> Result:
    """The design's figures from its steps."""
    sustained = [s for s in steps if s["sustained"]]
    keeping_up = [s for s in steps if s["delivery_keeps_up"] and s["sustained"]]
    best = max(sustained, key=lambda s: s["rate_per_s"], default=None)
    best_delivery = max(keeping_up, key=lambda s: s["rate_per_s"], default=None)
    failed = [s["rate_per_s"] for s in steps if not s["sustained"]]
    return {
        "sustainable_rate_per_s": best["rate_per_s"] if best else 0.0,
        "sustainable_accepted_per_s": best["accepted_per_s"] if best else 0.0,
        "p99_at_sustainable_ms": best["latency_ms"].get("p99_ms") if best else None,
        "first_failed_rate_per_s": min(failed, default=None),
        "sustainable_delivered_per_s": best_delivery["delivered_per_s"] if best_delivery else 0.0,
        "peak_delivered_per_s": max((s["delivered_per_s"] for s in steps), default=0.0),
        "steps": sorted(steps, key=lambda s: s["rate_per_s"]),
    }


def step_figures(run: RunResult, found: Arrivals, opts: BenchOptions) -> Result:
    """A step's figures: the window's accepted/s and delivered/s, and the verdicts."""
    schedule = run.schedule
    window_start = run.started_at + schedule.warmup
    window_end = window_start + schedule.duration
    in_window = sum(1 for at in found.times.values() if window_start <= at < window_end)
    accepted = {
        s.seq: run.started_at + s.offset
        for s in run.samples
        if is_success(s.status) and schedule.is_measured(s.seq)
    }
    delays = [found.times[seq] - at for seq, at in accepted.items() if seq in found.times]
    step: dict[str, Any] = run.summary() | {
        "accepted_per_s": run.ok / schedule.duration,
        "delivered_per_s": in_window / schedule.duration,
        "delivered_fraction": len(delays) / len(accepted) if accepted else 0.0,
        "end_to_end_ms": summarize_ms(delays),
    }
    step["sustained"], step["delivery_keeps_up"] = judge(step, opts)
    return step


async def _step(ctx: Context, design: str, rate: float) -> Result:
    opts = ctx.options
    schedule = Schedule(rate=rate, duration=opts.step_seconds, warmup=opts.step_warmup)
    ctx.progress.phase(
        f"throughput: {run_label(design)} at {rate:g} requests/s, "
        f"provider +{opts.provider_latency_ms:g} ms"
    )
    async with ctx.deployed(design, opts.provider_latency_ms) as target:
        measured = await load(ctx, target, schedule, TAG)
        window_end = measured.run.started_at + schedule.total_seconds
        await asyncio.sleep(max(0.0, window_end + KEEP_UP_GRACE_S - time.time()))
        found = await arrivals(target.sandbox_url, TAG)
    step = step_figures(measured.run, found, opts)
    step["cpu_percent_of_one_core"] = measured.cpu_percent_of_one_core
    ctx.progress.note(
        f"{'sustained' if step['sustained'] else 'NOT sustained'}: "
        f"{step['accepted_per_s']:.0f} accepted/s ({step['ok_fraction']:.1%} 2xx), "
        f"p99 {step['latency_ms'].get('p99_ms', math.nan):.0f} ms, "
        f"{step['delivered_per_s']:.0f} delivered/s "
        f"({step['delivered_fraction']:.0%} of the accepted within {KEEP_UP_GRACE_S:g} s)"
    )
    return step


async def search(ctx: Context, design: str) -> Result:
    """The step search for one design."""
    opts = ctx.options
    steps: list[Result] = []
    good: float | None = None
    bad: float | None = None
    rate = opts.start_rate
    refinements = 0
    while True:
        step = await _step(ctx, design, rate)
        steps.append(step)
        if step["sustained"]:
            good = rate if good is None else max(good, rate)
        else:
            bad = rate if bad is None else min(bad, rate)
        if good is not None and bad is not None:
            if refinements >= opts.refine_steps:
                break
            refinements += 1
        rate = next_rate(rate, good, bad)
        if rate > opts.max_rate or rate < 1:
            break
    return conclude(steps)


async def run_throughput(ctx: Context) -> Result:
    """The search for each run (the direct design, Pigeon on each stack)."""
    opts = ctx.options
    designs = {design: await search(ctx, design) for design in opts.runs}
    for design, result in designs.items():
        result["stack"] = run_stack(design)
    return {
        "provider_latency_ms": opts.provider_latency_ms,
        "slo_ms": opts.slo_ms,
        "min_ok_fraction": opts.min_ok_fraction,
        "keep_up_fraction": opts.keep_up_fraction,
        "keep_up_grace_s": KEEP_UP_GRACE_S,
        "designs": designs,
    }
