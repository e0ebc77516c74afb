"""Usage per day as SVG bars, laid out on the server (no chart library, no script)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pigeon.domain.notification import UsageDay

WIDTH = 720
HEIGHT = 220
#: room for the axis labels
LEFT, BOTTOM, TOP = 44, 24, 10


@dataclass(frozen=True, slots=True)
class Bar:
    """One day's bar: where it is drawn and what its tooltip says."""

    x: float
    y: float
    width: float
    height: float
    label: str
    day: str
    messages: int
    segments: int


@dataclass(frozen=True)
class Chart:
    """The bars and the scale of a usage chart."""

    bars: list[Bar]
    peak: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM
    top: int = TOP

    @property
    def baseline(self) -> int:
        """The y of the x axis."""
        return self.height - self.bottom

    @property
    def total_messages(self) -> int:
        """Messages over the whole range."""
        return sum(b.messages for b in self.bars)

    @property
    def total_segments(self) -> int:
        """Segments over the whole range."""
        return sum(b.segments for b in self.bars)


def usage_chart(days: Sequence[UsageDay]) -> Chart:
    """Bars of segments per day (what is billed), scaled to the busiest day."""
    peak = max((d.segments for d in days), default=0)
    plot_w = WIDTH - LEFT - 4
    plot_h = HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(days), 1)
    bars = []
    for i, day in enumerate(days):
        h = plot_h * day.segments / peak if peak else 0.0
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.1, 2),
                y=round(HEIGHT - BOTTOM - h, 2),
                width=round(max(slot * 0.8, 1.0), 2),
                height=round(h, 2),
                label=day.day.strftime("%d"),
                day=day.day.isoformat(),
                messages=day.messages,
                segments=day.segments,
            )
        )
    return Chart(bars, peak)
