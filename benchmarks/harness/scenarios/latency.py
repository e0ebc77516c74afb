"""Response time versus provider latency: accept latency of both designs at a fixed rate.

For each provider latency (the sandbox's ``latency_ms``) and each design, a
fresh deployment takes ``rate`` requests per second, open loop, for a warm-up
and then the measured window.
"""

from __future__ import annotations

from harness.loadgen import Schedule
from harness.options import run_label, run_stack
from harness.scenarios.common import Context, Result, load


async def run_latency(ctx: Context) -> Result:
    """Every (provider latency, run) pair; p50/p95/p99/max and error counts of each.

    A run is the direct design or Pigeon on one stack (its ``stack`` is recorded).
    """
    opts = ctx.options
    schedule = Schedule(rate=opts.rate, duration=opts.duration, warmup=opts.warmup)
    steps: list[Result] = []
    for latency_ms in opts.latencies_ms:
        for design in opts.runs:
            ctx.progress.phase(
                f"latency: {run_label(design)}, provider +{latency_ms:g} ms, "
                f"{opts.rate:g} requests/s"
            )
            async with ctx.deployed(design, latency_ms) as target:
                measured = await load(ctx, target, schedule, "lat")
            summary = measured.run.summary()
            steps.append(
                {
                    "design": design,
                    "stack": run_stack(design),
                    "provider_latency_ms": latency_ms,
                    **summary,
                    "cpu_percent_of_one_core": measured.cpu_percent_of_one_core,
                }
            )
            lat = summary["latency_ms"]
            ctx.progress.note(
                f"p50 {lat.get('p50_ms', float('nan')):.1f} ms, "
                f"p99 {lat.get('p99_ms', float('nan')):.1f} ms, "
                f"errors {summary['errors']}, timeouts {summary['timeouts']}"
            )
    return {"rate_per_s": opts.rate, "steps": steps}
