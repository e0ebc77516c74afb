"""``benchmarks/bench.py`` on both stacks: the plan, the scale-out curve, the targets."""

from __future__ import annotations

from typing import Any

import pytest

import bench
from pipebench.report import comparisons, scale_out_lines, scale_ratio, table


def test_every_scenario_runs_on_each_stack_and_the_scale_out_once_per_stack() -> None:
    """Both stacks by default; scale_out only in split; api-only and the bare echo (once, with
    the first stack) only measure the accept path."""
    args = bench.parse_args(["--quick"])
    assert args.stacks == ("sqlite", "kafka-postgres")
    assert args.scale_senders == (1, 2, 4)
    assert args.sender_concurrency == 8
    assert args.scale_count == 400
    planned = bench.plan(args)
    for stack in args.stacks:
        mine = [(t, s) for st, t, s in planned if st == stack]
        assert ("split", "scale_out") in mine
        assert ("single", "scale_out") not in mine
        assert ("api-only", "drain") not in mine
        assert ("api-only", "accept_max") in mine
        echo = [(t, s) for t, s in mine if t == "echo"]
        assert echo == (
            [("echo", "accept_max"), ("echo", "accept_latency")] if stack == "sqlite" else []
        )
        assert ("split", "accept_batch") in mine
        assert ("api-only", "accept_batch") not in mine  # the baselines have no batch route
        assert ("single", "webhook_latency") in mine
        # split and single: 7 each (accept_max, accept_batch, accept_latency, drain, steady,
        # idle, webhook_latency), split's scale_out, api-only's accept_max and accept_latency
        assert len(mine) - len(echo) == 7 + 1 + 7 + 2
    assert planned[0][0] == "sqlite"
    assert planned[-1][0] == "kafka-postgres"


def test_the_command_line_takes_stacks_and_the_scale_out_knobs() -> None:
    """--stack, --senders, --scale-latency-ms, --sender-concurrency; bad values stop it."""
    args = bench.parse_args(
        ["--stack", "kafka-postgres", "--senders", "1,4", "--sender-concurrency", "4"]
    )
    assert args.stacks == ("kafka-postgres",)
    assert args.scale_senders == (1, 4)
    assert args.scale_count == 4000
    opts = bench.options(args)
    assert (opts.sender_concurrency, opts.scale_latency_ms) == (4, 100.0)
    with pytest.raises(SystemExit):
        bench.parse_args(["--stack", "redis"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--senders", "0,2"])


def scale_run(senders: int, rate: float, *, complete: bool = True) -> dict[str, Any]:
    """One point of a scale-out curve."""
    return {
        "senders": senders,
        "sender_concurrency": 8,
        "count": 4000,
        "complete": complete,
        "sms_per_s": rate,
        "speedup_vs_1": rate / 60.0,
        "ready_after_spawn_seconds": 2.0 + senders,
        "delivered_before_ready": 10 * senders,
        "ready_to_last_seconds": 4000 / rate,
        "sms_per_s_first_to_last": rate,
        "duplicates": 0,
        "cpu_percent_of_one_core": {
            **{f"sms-sender-{i + 1}": 20.0 for i in range(senders)},
            "other": 5.0,
        },
    }


def results(kafka_accepted: float, sqlite_accepted: float, four: float) -> dict[str, Any]:
    """Figures of both stacks, as run_all keys them (stack -> topology -> scenario)."""

    def stack(accepted: float) -> dict[str, Any]:
        return {
            "split": {
                "accept_max": {
                    "accepted_per_s": accepted,
                    "latency": {"p50_ms": 10.0, "p99_ms": 40.0},
                    "errors": 0,
                },
                "scale_out": {
                    "provider_latency_ms": 100.0,
                    "sender_concurrency": 8,
                    "count": 4000,
                    "runs": [scale_run(1, 60.0), scale_run(2, 110.0), scale_run(4, four)],
                },
            }
        }

    return {"sqlite": stack(sqlite_accepted), "kafka-postgres": stack(kafka_accepted)}


def test_the_targets_compare_the_stacks_and_the_sender_counts() -> None:
    """Ingest 130/200 = 65 % passes 60 %; 4 senders at 200 vs 1 at 60 = 3.33x passes 3x."""
    verdicts, text = comparisons(results(130.0, 200.0, 200.0))
    ingest, *scale = verdicts
    assert ingest["met"] is True
    assert ingest["topology"] == "split"
    assert ingest["ratio"] == pytest.approx(0.65)
    assert "130/s vs 200/s = 65%" in ingest["measured"]
    assert [v["stack"] for v in scale] == ["sqlite", "kafka-postgres"]
    assert all(v["met"] for v in scale)
    assert scale[1]["ratio"] == pytest.approx(200 / 60)
    assert "PASS" in text and "MISS" not in text


def test_targets_missed_or_not_measured_say_so() -> None:
    """Kafka at 100/200 misses; 4 senders at 150 vs 60 (2.5x) misses; an incomplete drain is
    not judged."""
    figures = results(100.0, 200.0, 150.0)
    verdicts, _ = comparisons(figures)
    assert [v["met"] for v in verdicts] == [False, False, False]
    figures["kafka-postgres"]["split"]["scale_out"]["runs"][2]["complete"] = False
    assert scale_ratio(figures["kafka-postgres"]["split"]["scale_out"]) is None
    verdicts, _ = comparisons({"sqlite": figures["sqlite"]})
    assert verdicts[0]["met"] is None  # no Kafka figures to compare with


def test_the_tables_show_each_stack_and_each_point_of_the_curve() -> None:
    """The main table has a stack column and one scale-out row per stack; the curve has them all."""
    figures = results(130.0, 200.0, 200.0)
    env = {
        "date": "2026-11-26",
        "cpu_count": 2,
        "python": "3.11.7",
        "sqlite": "3.40.1",
        "postgresql": "15.20",
        "tansu": "0.6.0",
        "packages": {"aiokafka": "0.14.0"},
    }
    main = table(env, figures)
    assert "PostgreSQL 15.20, Tansu 0.6.0" in main
    assert "kafka-postgres  split     scale-out, 1/2/4 senders" in main
    assert "60 / 110 / 200 SMS/s" in main
    curve = scale_out_lines(figures)
    assert "PIGEON_SENDER_CONCURRENCY=8 per sender" in curve
    rows = [line.split() for line in curve.splitlines() if line.startswith("kafka-postgres")]
    assert [row[1] for row in rows] == ["1", "2", "4"]
    assert rows[2][3:5] == ["200.0", "3.33x"]


def test_a_rate_may_be_a_share_of_e_known_once_the_echo_has_run() -> None:
    """``--rate 0.05E``: the open-loop rates follow the same run's E, so a target "at 0.05 E"
    is measured at 0.05 E on any machine."""
    args = bench.parse_args(["--rate", "0.05E", "--steady-rate", "250"])
    assert bench.options(args, 4000.0).rate == pytest.approx(200.0)
    assert bench.options(args, 4000.0).steady_rate == 250.0
    assert bench.options(args).rate != bench.options(args).rate  # NaN: not yet
    for bad in ("fast", "0E", "-1", "inf"):
        with pytest.raises(SystemExit):
            bench.parse_args(["--rate", bad])
