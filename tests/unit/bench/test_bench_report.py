"""The report folder: Markdown summary, PNG charts and raw JSON, with the measured figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from harness.report import write_report
from harness.report.markdown import ms, per_s, ratio

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_report_folder_holds_a_summary_the_raw_figures_and_three_charts(
    tmp_path: Path, report: dict[str, Any]
) -> None:
    """summary.md, results.json, latency.png, outage.png and throughput.png are written."""
    written = write_report(tmp_path / "out", report)
    names = sorted(p.name for p in written)
    assert names == ["latency.png", "outage.png", "results.json", "summary.md", "throughput.png"]
    for path in written:
        assert path.parent == tmp_path / "out"
        if path.suffix == ".png":
            assert path.read_bytes().startswith(PNG_SIGNATURE)
            assert path.stat().st_size > 5_000


def test_the_raw_json_holds_every_figure(tmp_path: Path, report: dict[str, Any]) -> None:
    """The JSON reads back with the environment, options, scenarios and targets."""
    write_report(tmp_path, report)
    raw = orjson.loads((tmp_path / "results.json").read_bytes())
    assert raw["environment"]["cpu_count"] == 2
    assert raw["options"]["rate"] == report["options"]["rate"]
    pigeon = raw["scenarios"]["outage"]["designs"]["pigeon"]
    assert (pigeon["lost"], pigeon["backlog_at_restart"]) == (0, 30)
    assert raw["scenarios"]["latency"]["steps"][0]["latency_ms"]["hdr"].startswith("HIST")
    assert len(raw["targets"]) == 4


def test_the_summary_states_figures_ratios_and_the_machine(
    tmp_path: Path, report: dict[str, Any]
) -> None:
    """The Markdown carries the p99s, the Pigeon/direct ratio, losses, verdicts and versions."""
    write_report(tmp_path, report)
    text = (tmp_path / "summary.md").read_text()
    assert "2 cores" in text
    assert "pigeon-notify 0.1.0" in text
    assert "abcdef0" in text
    assert "| +200 ms | pigeon | 7.5 ms |" in text
    assert "| +200 ms | direct | 205 ms |" in text
    assert "*3.7%*" in text  # pigeon p99 / direct p99 at +200 ms
    assert "| direct | 100 | 65 | 35 / 0 | **35** |" in text
    assert "| pigeon | 100 | 100 | 0 / 0 | **0** |" in text
    assert "0.8 s" in text  # Pigeon's time to drain
    assert "Pigeon / direct: accepted 2.00x" in text
    assert "**MET**" in text
    assert "**MISSED**" in text
    assert "![Accept latency versus provider latency](latency.png)" in text


def test_a_failed_scenario_is_reported_without_a_chart(tmp_path: Path) -> None:
    """A scenario that raised shows its error; no chart is drawn for it."""
    report = {
        "environment": {"cpu_count": 2},
        "scenarios": {"outage": {"error": "RuntimeError: sms-sender exited"}},
        "targets": [],
    }
    written = write_report(tmp_path, report)
    assert sorted(p.name for p in written) == ["results.json", "summary.md"]
    assert "Failed: `RuntimeError: sms-sender exited`" in (tmp_path / "summary.md").read_text()


def test_table_cells_show_units_and_ratios_both_ways() -> None:
    """Small values keep a decimal; ratios below 1 are percentages, above 1 multiples."""
    assert ms(7.54) == "7.5 ms"
    assert ms(1234.4) == "1,234 ms"
    assert ms(None) == "-"
    assert ms(float("nan")) == "-"
    assert per_s(1520.4) == "1,520/s"
    assert ratio(5, 200) == "2.5%"
    assert ratio(600, 100) == "6.00x"
    assert ratio(1, 0) == "-"
