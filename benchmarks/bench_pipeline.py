"""Pigeon pipeline benchmark: accept throughput, accept latency, end-to-end SMS/s.

Runs Pigeon as real processes on 127.0.0.1 (free ports, data in a temporary
folder), drives ``POST /v1/notifications`` from this process, and prints a
table plus a JSON file of every raw figure. See ``benchmarks/README.md``.

    .venv/bin/python benchmarks/bench_pipeline.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipebench.cluster import stop_everything
from pipebench.report import cpu_lines, environment, table
from pipebench.scenarios import SCENARIOS, Options, run_scenario

T = TypeVar("T")
TOPOLOGIES = ("split", "single", "api-only")
#: api-only has no workers: only the accept measurements make sense there
API_ONLY_SCENARIOS = ("accept_max", "accept_latency")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` shortens every phase."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"))
    parser.add_argument(
        "--topology",
        default="split,single,api-only",
        help=f"comma-separated, from {', '.join(TOPOLOGIES)}",
    )
    parser.add_argument(
        "--scenario", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--connections", type=int, default=64, help="closed-loop connections")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop requests/s")
    parser.add_argument("--duration", type=float, help="measured seconds (10; 3 with --quick)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds (2; 1 with --quick)")
    parser.add_argument("--drain-count", type=int, help="preloaded notifications (20000; 3000)")
    parser.add_argument("--steady-rate", type=float, default=500.0, help="steady-state posts/s")
    parser.add_argument("--steady-seconds", type=float, help="steady-state seconds (10; 3)")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--keep-dir", action="store_true", help="keep data folders and logs")
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    args.drain_count = args.drain_count or (3000 if quick else 20000)
    args.steady_seconds = args.steady_seconds or (3.0 if quick else 10.0)
    return args


def options(args: argparse.Namespace) -> Options:
    """The scenario knobs from the command line."""
    return Options(
        connections=args.connections,
        warmup=args.warmup,
        duration=args.duration,
        rate=args.rate,
        drain_count=args.drain_count,
        steady_rate=args.steady_rate,
        steady_seconds=args.steady_seconds,
        drain_timeout=args.drain_timeout,
    )


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(topology, scenario) pairs to run, in order."""
    topologies = [t for t in args.topology.split(",") if t]
    scenarios = [s for s in args.scenario.split(",") if s]
    for name in topologies:
        if name not in TOPOLOGIES:
            raise SystemExit(f"unknown topology {name!r}; choose from {', '.join(TOPOLOGIES)}")
    for name in scenarios:
        if name not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    return [
        (t, s) for t in topologies for s in scenarios if t != "api-only" or s in API_ONLY_SCENARIOS
    ]


async def run_all(args: argparse.Namespace, root: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Run every planned scenario; a failing one is recorded and the rest still run."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    opts = options(args)
    for topology, name in plan(args):
        print(f"[{time.strftime('%H:%M:%S')}] {topology} / {name} ...", flush=True)
        try:
            result = await run_scenario(name, topology, opts, root)
        except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        results.setdefault(topology, {})[name] = result
        print(orjson.dumps(result).decode()[:400], flush=True)
    return results


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when available: the load generator should be as cheap as it can be."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _terminate(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; every process is stopped."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    env = environment()
    root = Path(tempfile.mkdtemp(prefix="pigeon-bench-"))
    try:
        results = run_loop(run_all(args, root))
    finally:
        stop_everything()
        if args.keep_dir:
            print(f"data folders and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report = {"environment": env, "options": vars(args) | {"out": str(args.out)}}
    report["results"] = results
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print()
    print(table(env, results))
    print(cpu_lines(results))
    print(f"\nraw figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
