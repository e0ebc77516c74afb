"""Percentiles: exact nearest-rank on samples, and HDR histograms that agree with them."""

from __future__ import annotations

import math
import random

import pytest

from harness.stats import LatencyHistogram, percentile, percentile_key, summarize_ms


def test_nearest_rank_percentiles_of_one_to_a_hundred() -> None:
    """For 1..100 the p-th percentile is p itself, and p0 is the smallest."""
    ordered = [float(i) for i in range(1, 101)]
    assert percentile(ordered, 50) == 50
    assert percentile(ordered, 99) == 99
    assert percentile(ordered, 99.9) == 100
    assert percentile(ordered, 100) == 100
    assert percentile(ordered, 0) == 1


def test_nearest_rank_never_interpolates() -> None:
    """Of four samples the median is the second one, not the mean of two."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 51) == 3.0


def test_no_samples_have_no_percentile() -> None:
    """An empty list gives NaN rather than a made-up number."""
    assert math.isnan(percentile([], 99))


def test_a_percentile_outside_0_to_100_is_refused() -> None:
    """p must lie between 0 and 100."""
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_summarize_ms_reports_milliseconds_of_seconds() -> None:
    """Samples in seconds come back in milliseconds, sorted first."""
    summary = summarize_ms([0.003, 0.001, 0.002])
    assert summary["count"] == 3
    assert summary["p50_ms"] == pytest.approx(2.0)
    assert summary["max_ms"] == pytest.approx(3.0)
    assert summary["mean_ms"] == pytest.approx(2.0)
    assert summarize_ms([]) == {"count": 0}


def test_percentile_keys_name_the_percentile_without_a_dot() -> None:
    """50 -> p50_ms, 99.9 -> p999_ms."""
    assert [percentile_key(p) for p in (50.0, 95.0, 99.0, 99.9)] == [
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "p999_ms",
    ]


def test_the_histogram_agrees_with_exact_percentiles_within_a_thousandth() -> None:
    """10,000 log-normal latencies: HDR percentiles are within 0.1 % of the exact ones."""
    rng = random.Random(3)
    samples = [rng.lognormvariate(-4, 1) for _ in range(10_000)]
    histogram = LatencyHistogram()
    for sample in samples:
        histogram.record(sample)
    ordered = sorted(samples)
    assert histogram.count == len(samples)
    for p in (50, 90, 99, 99.9):
        exact_ms = percentile(ordered, p) * 1000
        assert histogram.percentile_ms(p) == pytest.approx(exact_ms, rel=1e-3, abs=1e-3)
    assert histogram.max_ms == pytest.approx(ordered[-1] * 1000, rel=1e-3)


def test_the_histogram_clamps_what_it_cannot_hold() -> None:
    """A negative duration counts as the smallest, an hour as the largest (10 minutes)."""
    histogram = LatencyHistogram()
    histogram.record(-1.0)
    histogram.record(3600.0)
    assert histogram.count == 2
    assert histogram.percentile_ms(0) == pytest.approx(0.001)
    assert histogram.max_ms == pytest.approx(600_000, rel=1e-3)


def test_an_empty_histogram_reports_only_its_count() -> None:
    """No recordings: count 0 and NaN percentiles."""
    histogram = LatencyHistogram()
    assert histogram.summary() == {"count": 0}
    assert math.isnan(histogram.percentile_ms(99))
    assert math.isnan(histogram.max_ms)


def test_an_encoded_histogram_decodes_to_the_same_figures() -> None:
    """The raw JSON's ``hdr`` string brings back every percentile."""
    histogram = LatencyHistogram()
    for ms in range(1, 501):
        histogram.record(ms / 1000)
    copy = LatencyHistogram.decode(histogram.encode())
    assert copy.summary() == histogram.summary()
    assert histogram.to_json()["hdr"] == histogram.encode()


def test_merged_histograms_hold_both_sets_of_recordings() -> None:
    """Adding one histogram to another sums the counts."""
    first, second = LatencyHistogram(), LatencyHistogram()
    first.record(0.001)
    second.record(0.1)
    first.add(second)
    assert first.count == 2
    assert first.max_ms == pytest.approx(100, rel=1e-3)
