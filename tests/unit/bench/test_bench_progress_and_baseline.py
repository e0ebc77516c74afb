"""The progress line, and finding the direct baseline in the source checkout."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from harness.designs import find_baseline
from harness.loadgen import RunResult, Schedule
from harness.progress import Progress
from pigeon.errors import ConfigurationError


def test_on_a_terminal_the_status_line_is_redrawn_in_place() -> None:
    """Live progress rewrites one line with a carriage return and ends it at the next phase."""
    out = io.StringIO()
    progress = Progress(out, live=True)
    progress.phase("latency: pigeon")
    run = RunResult(Schedule(rate=10, duration=1))
    run.record_dispatch(0, 0.0)
    progress.update(run, 0.05)
    progress.update(run, 0.3)
    progress.phase("latency: direct")
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 2
    assert "sent 1/10" in text
    assert "in flight 1" in text
    assert text.endswith("latency: direct\n")


def test_off_a_terminal_status_lines_are_printed_at_most_every_few_seconds() -> None:
    """In a log, a burst of updates leaves plain lines only, without control characters."""
    out = io.StringIO()
    progress = Progress(out, live=False, every=60)
    progress.phase("outage: pigeon")
    for _ in range(100):
        progress.status("sending")
    progress.note("sender stopped")
    text = out.getvalue()
    assert "\r" not in text
    assert "sending" not in text  # the phase just started: nothing to report yet
    assert text.splitlines()[-1] == "    sender stopped"


def test_the_baseline_is_found_beside_the_harness() -> None:
    """Without --baseline-dir, benchmarks/direct is found beside benchmarks/harness."""
    found = find_baseline()
    assert (found / "direct" / "__main__.py").is_file()


def test_a_missing_baseline_names_the_option_and_what_to_do(tmp_path: Path) -> None:
    """A folder without direct/ is refused, naming --baseline-dir and where it looked."""
    with pytest.raises(ConfigurationError) as caught:
        find_baseline(tmp_path)
    assert caught.value.setting == "--baseline-dir"
    assert str(tmp_path) in str(caught.value)
    assert "pass --baseline-dir" in str(caught.value)
