"""``benchmarks/bench.py`` end to end on tiny runs: real processes on 127.0.0.1, a real report.

Nothing here asserts a timing: only that every request is accounted for and
that the report holds what was measured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from harness.options import BenchOptions
from harness.progress import Progress
from harness.runner import bench

BENCH = str(Path(__file__).resolve().parents[3] / "benchmarks" / "bench.py")


@pytest.mark.timeout(180)
def test_a_tiny_latency_run_measures_both_designs_and_writes_the_report(tmp_path: Path) -> None:
    """``bench.py --quick`` on one provider latency: both designs, summary, JSON and chart."""
    out = tmp_path / "report"
    done = subprocess.run(
        [
            sys.executable,
            BENCH,
            "--quick",
            "--scenario",
            "latency",
            "--stack",
            "sqlite",
            "--latencies",
            "0",
            "--warmup",
            "0.5",
            "--duration",
            "1",
            "--out",
            str(out),
        ],
        cwd=tmp_path,  # the baseline is found beside the harness, from any folder
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["latency.png", "results.json", "summary.md"]
    report = orjson.loads((out / "results.json").read_bytes())
    assert report["environment"]["cpu_count"] >= 1
    steps = report["scenarios"]["latency"]["steps"]
    assert sorted(s["design"] for s in steps) == ["direct", "pigeon-sqlite"]
    assert [s["stack"] for s in steps if s["design"] == "pigeon-sqlite"] == ["sqlite"]
    for step in steps:
        assert step["sent"] == 20  # 20/s for 1 s after the warm-up
        assert step["ok"] + step["errors"] + step["timeouts"] == step["sent"]
        assert step["latency_ms"]["count"] == step["ok"]
    summary = (out / "summary.md").read_text()
    assert "| +0 ms | direct |" in summary
    assert "| +0 ms | pigeon (SQLite) |" in summary
    assert "accept latency p99" in done.stdout


def test_a_missing_baseline_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    """Without the direct baseline the command says where it looked and what to pass."""
    missing = ["--baseline-dir", str(tmp_path), "--out", str(tmp_path)]
    done = subprocess.run(
        [*[sys.executable, BENCH, "--quick", "--scenario", "latency"], *missing],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("bench: error: --baseline-dir: the direct baseline")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "summary.md").exists()


@pytest.mark.timeout(180)
def test_a_tiny_outage_run_accounts_for_every_request(tmp_path: Path) -> None:
    """Both designs through a 1 s outage: every request is accepted or failed, delivered or lost."""
    options = BenchOptions.quick(
        scenarios=("outage",), warmup=0.5, outage_run=3.0, outage_at=1.0, outage_length=1.0
    )
    report, files = bench(options, tmp_path / "report", progress=Progress(live=False))
    assert {p.name for p in files} == {"summary.md", "results.json", "outage.png"}
    designs = report["scenarios"]["outage"]["designs"]
    assert sorted(designs) == ["direct", "pigeon-sqlite"]
    for result in designs.values():
        assert result["sent"] == 70  # 20/s for 0.5 s + 3 s
        assert result["accepted"] + result["failed"] + result["timeouts"] == result["sent"]
        assert result["delivered"] + result["lost"] == result["sent"]
        assert result["sender_start_s"] > 0
        assert sum(result["timeline"]["ok"]) == result["accepted"]
    assert report["targets"][1]["name"] == "outage: lost"
    assert report["targets"][1]["stack"] == "sqlite"
