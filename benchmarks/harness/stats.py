"""Latency statistics: exact nearest-rank percentiles and HDR histograms.

Samples are recorded in microseconds into an HdrHistogram (3 significant
digits, 1 µs to 10 minutes), so any percentile of any number of requests is
known within 0.1 % without keeping the samples. :func:`percentile` is the
exact reference for sorted samples, used where the samples are few.
"""

from __future__ import annotations

import math
from typing import Any, cast

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]  # ships no type hints

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes: anything slower is clamped (and is a failure anyway)
SIGNIFICANT_DIGITS = 3
#: the percentiles every summary reports
REPORTED = (50.0, 90.0, 95.0, 99.0, 99.9)


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples (exact, no interpolation)."""
    if not ordered:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError(f"a percentile lies between 0 and 100, got {p}")
    rank = max(1, math.ceil(len(ordered) * p / 100))
    return ordered[min(len(ordered), rank) - 1]


def summarize_ms(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in milliseconds of samples in seconds (exact)."""
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50_ms": percentile(ordered, 50) * 1000,
        "p90_ms": percentile(ordered, 90) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "p999_ms": percentile(ordered, 99.9) * 1000,
        "max_ms": ordered[-1] * 1000,
        "mean_ms": sum(ordered) / len(ordered) * 1000,
    }


def percentile_key(p: float) -> str:
    """The summary key of a percentile: ``50.0`` -> ``p50_ms``, ``99.9`` -> ``p999_ms``."""
    return f"p{p:g}".replace(".", "") + "_ms"


class LatencyHistogram:
    """Durations recorded in seconds, read back in milliseconds (a typed HdrHistogram)."""

    def __init__(self) -> None:
        self._hdr = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)

    def record(self, seconds: float) -> None:
        """Add one duration; negative ones count as 0 and huge ones as the maximum."""
        micros = min(HIGHEST_US, max(LOWEST_US, round(seconds * 1_000_000)))
        self._hdr.record_value(micros)

    def add(self, other: LatencyHistogram) -> None:
        """Merge ``other``'s recordings into this one."""
        self._hdr.add(other._hdr)

    @property
    def count(self) -> int:
        """How many durations were recorded."""
        return int(self._hdr.get_total_count())

    def percentile_ms(self, p: float) -> float:
        """The ``p``-th percentile in milliseconds (NaN when empty)."""
        if not self.count:
            return math.nan
        return int(self._hdr.get_value_at_percentile(p)) / 1000

    @property
    def max_ms(self) -> float:
        """The largest duration in milliseconds (NaN when empty)."""
        return int(self._hdr.get_max_value()) / 1000 if self.count else math.nan

    @property
    def mean_ms(self) -> float:
        """The mean duration in milliseconds (NaN when empty)."""
        return float(self._hdr.get_mean_value()) / 1000 if self.count else math.nan

    def summary(self) -> dict[str, float]:
        """Count, the reported percentiles, max and mean, in milliseconds."""
        if not self.count:
            return {"count": 0}
        out: dict[str, float] = {"count": self.count}
        for p in REPORTED:
            out[percentile_key(p)] = self.percentile_ms(p)
        out["max_ms"] = self.max_ms
        out["mean_ms"] = self.mean_ms
        return out

    def encode(self) -> str:
        """The histogram in HdrHistogram's compressed base64 form, for the raw JSON."""
        return cast(bytes, self._hdr.encode()).decode("ascii")

    @classmethod
    def decode(cls, encoded: str) -> LatencyHistogram:
        """A histogram back from :meth:`encode`."""
        histogram = cls()
        histogram._hdr = HdrHistogram.decode(encoded.encode("ascii"))
        return histogram

    def to_json(self) -> dict[str, Any]:
        """The summary plus the encoded histogram."""
        return self.summary() | {"hdr": self.encode()}
