"""The live progress display: one status line on stderr, redrawn in place on a terminal.

Off a terminal (a log file, CI) the line is printed at most every few seconds
instead, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from harness.loadgen import RunResult

_CLEAR = "\r\x1b[K"


class Progress:
    """Reports which phase runs and how far its requests got."""

    def __init__(
        self, stream: TextIO | None = None, *, live: bool | None = None, every: float = 5.0
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._live = self._stream.isatty() if live is None else live
        self._every = every
        self._phase = ""
        self._last_print = 0.0
        self._drawn = False

    def phase(self, name: str) -> None:
        """Start a new phase (a line of its own)."""
        self._end_line()
        self._phase = name
        self._last_print = time.monotonic()
        self._write(f"[{time.strftime('%H:%M:%S')}] {name}\n")

    def note(self, text: str) -> None:
        """Something happened inside the phase (the sender stopped, a step passed)."""
        self._end_line()
        self._write(f"    {text}\n")

    def status(self, text: str) -> None:
        """Replace the status line (throttled when not on a terminal)."""
        if self._live:
            self._write(f"{_CLEAR}    {text}")
            self._drawn = True
            return
        now = time.monotonic()
        if now - self._last_print >= self._every:
            self._last_print = now
            self._write(f"    {text}\n")

    def update(self, run: RunResult, elapsed: float) -> None:
        """The load generator's view: time, sent, answered, failed, in flight."""
        schedule = run.schedule
        answered = len(run.samples)
        failed = sum(1 for s in run.samples[-200:] if not 200 <= s.status < 300)
        phase = "warm-up" if elapsed < schedule.warmup else "measuring"
        self.status(
            f"{phase} {min(elapsed, schedule.total_seconds):5.1f}/{schedule.total_seconds:.0f} s"
            f"  sent {run.dispatched}/{schedule.count}  answered {answered}"
            f"  in flight {run.in_flight}  failed (last 200) {failed}"
            f"  p99 so far {run.latency.percentile_ms(99):.1f} ms"
        )

    def done(self) -> None:
        """Finish the last status line."""
        self._end_line()

    def _end_line(self) -> None:
        if self._drawn:
            self._write("\n")
            self._drawn = False

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()
