"""The benchmark's report folder: ``summary.md``, ``results.json`` and PNG charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from harness.report.charts import draw_charts
from harness.report.markdown import render_summary

SUMMARY = "summary.md"
RAW = "results.json"


def write_report(folder: Path, report: dict[str, Any]) -> list[Path]:
    """Write every file of ``report`` into ``folder`` (created); the paths written.

    ``report`` holds ``environment``, ``options``, ``scenarios`` (by name) and
    ``targets``. Charts come first so that the summary can link the ones drawn.
    """
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / RAW
    raw.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    charts = draw_charts(folder, report.get("scenarios", {}))
    summary = folder / SUMMARY
    summary.write_text(render_summary(report, [c.name for c in charts]))
    return [summary, raw, *charts]
