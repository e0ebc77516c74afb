"""One comparison run (direct call versus Pigeon): scenarios in a temporary folder, then
the report folder."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from harness.designs import find_baseline
from harness.machine import KAFKA_PACKAGES, PACKAGES, environment
from harness.options import PIGEON, BenchOptions, is_pigeon
from harness.processes import stop_everything
from harness.progress import Progress
from harness.report import write_report
from harness.scenarios.common import Context, Result
from harness.scenarios.latency import run_latency
from harness.scenarios.outage import run_outage
from harness.scenarios.throughput import run_throughput
from harness.stacks import (
    KAFKA_POSTGRES,
    check_kafka_postgres,
    database_url,
    drop_live_schemas,
    server_version,
    tansu_version,
)
from harness.targets import evaluate
from pigeon import loop as event_loop

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
    env = stack_environment(ctx.options)
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
        "targets": [t.to_json() for t in evaluate(scenarios, pigeon_runs(ctx.options))],
    }


def pigeon_runs(options: BenchOptions) -> list[str]:
    """The Pigeon runs the targets judge (one per stack)."""
    return [run for run in options.runs if is_pigeon(run)]


def uses_kafka_postgres(options: BenchOptions) -> bool:
    """True when Pigeon is measured on Kafka + PostgreSQL."""
    return PIGEON in options.designs and KAFKA_POSTGRES in options.stacks


def stack_environment(options: BenchOptions) -> dict[str, Any]:
    """The machine and versions; with Kafka + PostgreSQL also the broker's and the server's."""
    return environment_of(kafka_postgres=uses_kafka_postgres(options))


def environment_of(*, kafka_postgres: bool) -> dict[str, Any]:
    """The machine and versions; with Kafka + PostgreSQL also the broker's and the server's
    (both benchmarks report this)."""
    if not kafka_postgres:
        return environment()
    env = environment((*PACKAGES, *KAFKA_PACKAGES))
    env["postgresql"] = server_version(database_url())
    env["tansu"] = tansu_version()
    return env


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when available: the load generator should cost as little as it can."""
    return event_loop.run(main)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C meanwhile, so that the processes started so far are
    stopped (in the main thread; elsewhere signals cannot be handled)."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        yield
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def bench(
    options: BenchOptions,
    out: Path,
    *,
    baseline_dir: Path | None = None,
    keep_dir: bool = False,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], list[Path]]:
    """Run ``options`` and write the report into ``out``; every started process is stopped."""
    report = measure(options, baseline_dir=baseline_dir, keep_dir=keep_dir, progress=progress)
    return report, write_report(out, report)


def measure(
    options: BenchOptions,
    *,
    baseline_dir: Path | None = None,
    keep_dir: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``options``' comparison scenarios; the report (not written); every started
    process is stopped.

    Raises :class:`~pigeon.errors.ConfigurationError` when the direct baseline
    cannot be found, or when Kafka + PostgreSQL is asked for and cannot be set
    up here (no Tansu, no aiokafka or psycopg, no PostgreSQL server answering).
    """
    progress = progress or Progress()
    baseline = find_baseline(baseline_dir) if "direct" in options.designs else Path()
    if uses_kafka_postgres(options):
        check_kafka_postgres(database_url())
    work = Path(tempfile.mkdtemp(prefix="pigeon-bench-"))
    try:
        with sigterm_unwinds():
            report = run_loop(run_scenarios(Context(options, work, baseline, progress)))
    finally:
        stop_everything()
        drop_live_schemas()  # normally dropped as each deployment stops; this is the net
        progress.done()
        if keep_dir:
            progress.note(f"process logs and data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return report
