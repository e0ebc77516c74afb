"""The service suites run on both stacks, like the API suite.

``stack`` is the embedded default (one SQLite file in ``tmp_path``) or Kafka +
PostgreSQL (a fresh schema and a Tansu broker per test, with the outbox relay
running beside the workers).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from services_testkit import Stack
from tests.integration.kafka_broker import kafka_stack_settings, running_broker
from tests.integration.postgres import fresh_schema

STACKS = ("sqlite", "kafka+postgres")


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """Each stack in turn."""
    if request.param == "sqlite":
        yield Stack("sqlite", tmp_path)
        return
    # a broker of its own: every test's workers use the same group names, and a group
    # that an earlier test's members left mid-rebalance could keep the next from joining
    with running_broker() as broker, fresh_schema() as database_url:
        yield Stack("kafka+postgres", tmp_path, kafka_stack_settings(broker, database_url), broker)
