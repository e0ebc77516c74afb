"""Fixtures of the bench unit tests (the builders are in ``bench_samples.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.bench.bench_samples import sample_report

from harness.options import BenchOptions


@pytest.fixture
def options() -> BenchOptions:
    """Default options (the thresholds the verdicts use)."""
    return BenchOptions()


@pytest.fixture
def report(options: BenchOptions) -> dict[str, Any]:
    """A whole report built from synthetic runs by the real summarizing functions."""
    return sample_report(options)
