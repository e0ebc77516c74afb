"""One ``pigeon bench`` run: scenarios in a temporary folder, then the report folder."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from pigeon.bench.designs import find_baseline
from pigeon.bench.machine import environment
from pigeon.bench.options import BenchOptions
from pigeon.bench.processes import stop_everything
from pigeon.bench.progress import Progress
from pigeon.bench.report import write_report
from pigeon.bench.scenarios.common import Context, Result
from pigeon.bench.scenarios.latency import run_latency
from pigeon.bench.scenarios.outage import run_outage
from pigeon.bench.scenarios.throughput import run_throughput
from pigeon.bench.targets import evaluate

T = TypeVar("T")

RUNNERS: dict[str, Callable[[Context], Awaitable[Result]]] = {
    "latency": run_latency,
    "outage": run_outage,
    "throughput": run_throughput,
}
#: a scenario failing for one of these is recorded in the report and the others still run
SCENARIO_FAILURES = (
    RuntimeError,
    TimeoutError,
    OSError,
    subprocess.SubprocessError,
    aiohttp.ClientError,
)


async def run_scenarios(ctx: Context) -> dict[str, Any]:
    """Every chosen scenario, in order, into one report (figures, environment, targets)."""
    started = time.monotonic()
    env = environment()
    scenarios: dict[str, Result] = {}
    for name in ctx.options.scenarios:
        try:
            scenarios[name] = await RUNNERS[name](ctx)
        except SCENARIO_FAILURES as exc:
            ctx.progress.note(f"{name} failed: {type(exc).__name__}: {exc}")
            scenarios[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "environment": env,
        "options": ctx.options.to_json(),
        "elapsed_s": time.monotonic() - started,
        "scenarios": scenarios,
        "targets": [t.to_json() for t in evaluate(scenarios)],
    }


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when available: the load generator should cost as little as it can."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(main)
    return uvloop.run(main)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def bench(
    options: BenchOptions,
    out: Path,
    *,
    baseline_dir: Path | None = None,
    keep_dir: bool = False,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], list[Path]]:
    """Run ``options`` and write the report into ``out``; every started process is stopped.

    Raises :class:`~pigeon.errors.ConfigurationError` when the direct baseline
    cannot be found.
    """
    progress = progress or Progress()
    baseline = find_baseline(baseline_dir) if "direct" in options.designs else Path()
    work = Path(tempfile.mkdtemp(prefix="pigeon-bench-"))
    # SIGTERM unwinds like Ctrl-C, so that the processes started so far are stopped
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        report = run_loop(run_scenarios(Context(options, work, baseline, progress)))
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        stop_everything()
        progress.done()
        if keep_dir:
            progress.note(f"process logs and data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return report, write_report(out, report)
