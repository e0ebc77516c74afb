"""Fixtures of the end-to-end suite: real ``pigeon`` processes on 127.0.0.1.

A failing test gets every process's stdout and stderr printed in its report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e.e2e_processes import KAFKA_POSTGRES, SQLITE, PigeonCluster
from tests.integration.kafka_broker import running_broker
from tests.integration.postgres import fresh_schema

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
def stack() -> str:
    """The stack a cluster runs on; a test runs on both with
    ``@pytest.mark.parametrize("stack", STACKS)``."""
    return SQLITE


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path, stack: str) -> Iterator[PigeonCluster]:
    """Pigeon processes on one stack (a data folder in ``tmp_path``, or a fresh PostgreSQL
    schema and a Kafka broker of their own); all stopped afterwards, then the schema dropped."""
    with contextlib.ExitStack() as resources:
        if stack == KAFKA_POSTGRES:
            broker = resources.enter_context(running_broker())
            database_url = resources.enter_context(fresh_schema())
            pigeon = PigeonCluster(tmp_path, database_url=database_url, broker=broker)
        else:
            pigeon = PigeonCluster(tmp_path)
        try:
            yield pigeon
        finally:
            pigeon.stop_all()
            if request.node.stash.get(_FAILED, False):
                print(f"\n{pigeon.logs()}")
