"""The sender down in the middle of a run: what the caller saw and what got delivered.

Pigeon's ``sms-sender`` worker (or the direct design's SMS service) is stopped
``outage_at`` seconds into the measured window and started again
``outage_length`` seconds later, while requests keep arriving at a fixed rate.
Every request's SMS is then looked for in the sandbox inbox: a request whose
SMS never arrives is lost, whatever the caller was told.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

from harness.designs import Deployment
from harness.loadgen import TIMED_OUT, RunResult, Schedule, is_success
from harness.options import run_label, run_stack
from harness.sandbox_client import Arrivals
from harness.scenarios.common import Context, Result, load, wait_delivered
from harness.stats import summarize_ms

TAG = "outage"


async def run_outage(ctx: Context) -> Result:
    """The outage run for each run (the direct design, Pigeon on each stack)."""
    opts = ctx.options
    schedule = Schedule(rate=opts.rate, duration=opts.outage_run, warmup=opts.warmup)
    designs: dict[str, Result] = {}
    for design in opts.runs:
        ctx.progress.phase(
            f"outage: {run_label(design)}, {opts.rate:g} requests/s for {opts.outage_run:g} s, "
            f"sender down from {opts.outage_at:g} s for {opts.outage_length:g} s"
        )
        async with ctx.deployed(design, opts.provider_latency_ms) as target:

            async def outage(target: Deployment = target) -> Result:
                return await _stop_and_restart(ctx, target)

            measured = await load(ctx, target, schedule, TAG, alongside=outage)
            wanted = {s.seq for s in measured.run.samples if is_success(s.status)}
            found, _ = await wait_delivered(
                target.sandbox_url, TAG, wanted, opts.drain_timeout, ctx.progress
            )
        ctx.progress.done()
        result = summarize_outage(measured.run, found, measured.alongside)
        result["cpu_percent_of_one_core"] = measured.cpu_percent_of_one_core
        result["stack"] = run_stack(design)
        designs[design] = result
        drain = result["time_to_drain_s"]
        drained = (
            "never drained"
            if drain is None
            else f"{result['backlog_at_restart']} waiting drained {drain:.1f} s after the restart"
        )
        ctx.progress.note(
            f"accepted {result['accepted']}, failed {result['failed']}, "
            f"timeouts {result['timeouts']}, lost {result['lost']}, {drained}"
        )
    return {
        "rate_per_s": opts.rate,
        "provider_latency_ms": opts.provider_latency_ms,
        "run_s": opts.outage_run,
        "outage_at_s": opts.outage_at,
        "outage_length_s": opts.outage_length,
        "designs": designs,
    }


async def _stop_and_restart(ctx: Context, target: Deployment) -> Result:
    """Stop the sender on time, start it again on time; the wall-clock times of each step."""
    opts = ctx.options
    await asyncio.sleep(opts.warmup + opts.outage_at)
    stopped_at = time.time()
    ctx.progress.note(f"stopping the {target.name} sender")
    await target.stop_sender()
    stop_done_at = time.time()
    await asyncio.sleep(max(0.0, stopped_at + opts.outage_length - time.time()))
    restarted_at = time.time()
    ctx.progress.note(f"starting the {target.name} sender again")
    await target.start_sender()
    ready_at = time.time()
    ctx.progress.note(f"sender ready after {ready_at - restarted_at:.1f} s")
    return {
        "stopped_at": stopped_at,
        "stop_done_at": stop_done_at,
        "restarted_at": restarted_at,
        "ready_at": ready_at,
    }


def summarize_outage(run: RunResult, found: Arrivals, events: Result) -> Result:
    """Accepted, failed, lost and time to drain, from the requests and the inbox.

    Every request counts here, warm-up included: a lost message is lost
    whenever it was sent. ``time_to_drain_s`` runs from the restart until the
    last message accepted before the restart reached the provider (``None``
    when one never did; 0 when nothing was waiting).
    """
    start = run.started_at
    restarted, ready = events["restarted_at"], events["ready_at"]
    delivered_at = found.times
    sent = {s.seq for s in run.samples}
    accepted = {s.seq for s in run.samples if is_success(s.status)}
    timeouts = sum(1 for s in run.samples if s.status == TIMED_OUT)
    delivered = sent & delivered_at.keys()
    backlog = {
        s.seq
        for s in run.samples
        if is_success(s.status)
        and start + s.offset + s.latency < restarted
        and delivered_at.get(s.seq, math.inf) >= restarted
    }
    if any(seq not in delivered_at for seq in backlog):
        drain: float | None = None
    else:
        drain = max((delivered_at[seq] - restarted for seq in backlog), default=0.0)
    in_outage = [
        s for s in run.samples if events["stopped_at"] <= start + s.offset <= events["ready_at"]
    ]
    return {
        "sent": len(sent),
        "accepted": len(accepted),
        "failed": len(sent) - len(accepted) - timeouts,
        "timeouts": timeouts,
        "delivered": len(delivered),
        "lost": len(sent - delivered),
        "accepted_not_delivered": len(accepted - delivered),
        "delivered_without_success_answer": len(delivered - accepted),
        "duplicates": found.duplicates,
        "backlog_at_restart": len(backlog),
        "time_to_drain_s": drain,
        "time_to_drain_from_ready_s": (
            drain - (ready - restarted) if drain is not None and backlog else None
        ),
        "sender_start_s": ready - restarted,
        "during_outage": {
            "sent": len(in_outage),
            "accepted": sum(1 for s in in_outage if is_success(s.status)),
            "accept_latency_ms": summarize_ms(
                [s.latency for s in in_outage if is_success(s.status)]
            ),
        },
        "window": run.summary(),
        "events_s": {name: at - start for name, at in events.items()},
        "timeline": timeline(run, found),
    }


def timeline(run: RunResult, found: Arrivals) -> Result:
    """Per second since the start of the run: requests answered 2xx, failed, SMS delivered."""
    ok: Counter[int] = Counter()
    failed: Counter[int] = Counter()
    for s in run.samples:
        (ok if is_success(s.status) else failed)[int(s.offset)] += 1
    delivered = Counter(int(at - run.started_at) for at in found.times.values())
    seconds = max([*ok, *failed, *delivered, 0]) + 1
    return {
        "second": list(range(seconds)),
        "ok": [ok[i] for i in range(seconds)],
        "failed": [failed[i] for i in range(seconds)],
        "delivered": [delivered[i] for i in range(seconds)],
    }
