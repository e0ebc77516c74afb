"""Fixtures of the end-to-end suite: real ``pigeon`` processes on 127.0.0.1.

A failing test gets every process's stdout and stderr printed in its report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e.e2e_processes import PigeonCluster

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether the test body failed, for the cluster fixture's teardown."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PigeonCluster]:
    """Pigeon processes sharing a data folder in ``tmp_path``; all stopped afterwards."""
    pigeon = PigeonCluster(tmp_path)
    try:
        yield pigeon
    finally:
        pigeon.stop_all()
        if request.node.stash.get(_FAILED, False):
            print(f"\n{pigeon.logs()}")
