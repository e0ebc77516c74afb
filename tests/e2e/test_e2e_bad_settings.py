"""Mistakes in settings stop ``pigeon`` at once, with one line that names the setting."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from tests.e2e.e2e_processes import KAFKA_POSTGRES, PigeonCluster
from tests.integration.postgres import POSTGRES_URL
from tests.support import free_port


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("command", "setting", "value"),
    [
        (["api"], "PIGEON_BUS_URL", "carrier-pigeon://loft"),
        (["api"], "PIGEON_API_PORT", "notaport"),
        (["worker", "sms-sender"], "PIGEON_BUS_LEASE_SECONDS", "0"),
        (["sandbox"], "PIGEON_SANDBOX_PORT", "70000"),
        (["run"], "PIGEON_LOG_FORMAT", "xml"),
        (["keys", "create", "--account", "e2e"], "PIGEON_BUS_PARTITIONS", "many"),
        (["worker", "usage-meter"], "PIGEON_BUS_URL", "sqlite:///elsewhere.db"),
    ],
)
def test_bad_settings_fail_fast_with_one_clear_line(
    cluster: PigeonCluster, command: list[str], setting: str, value: str
) -> None:
    """A bad PIGEON_* value exits 2 with one 'pigeon: error:' line naming it, no traceback."""
    done = cluster.cli(*command, env={setting: value}, within=30)

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"pigeon: error: {setting}"), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", [["api"], ["sandbox"]])
def test_a_port_already_in_use_fails_fast_with_one_clear_line(
    cluster: PigeonCluster, command: list[str]
) -> None:
    """Another program on the port gives exit 2 and one line naming the port, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = cluster.cli(
            *command, env={"PIGEON_API_PORT": port, "PIGEON_SANDBOX_PORT": port}, within=30
        )

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pigeon: error:"), done.stderr
    assert port in lines[0], done.stderr


def _unreachable_database() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/test"


def _unknown_database() -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/pigeon_no_such_database"


def _unreachable_broker() -> str:
    return f"kafka://127.0.0.1:{free_port()}"


#: (command, the setting at fault, its value) against a working broker and database
KAFKA_POSTGRES_MISTAKES: dict[str, tuple[list[str], str, Callable[[], str]]] = {
    "api-database-not-listening": (["api"], "PIGEON_DATABASE_URL", _unreachable_database),
    "api-unknown-database": (["api"], "PIGEON_DATABASE_URL", _unknown_database),
    "api-broker-not-listening": (["api"], "PIGEON_BUS_URL", _unreachable_broker),
    "relay-broker-not-listening": (
        ["worker", "outbox-relay"],
        "PIGEON_BUS_URL",
        _unreachable_broker,
    ),
    "run-database-not-listening": (["run"], "PIGEON_DATABASE_URL", _unreachable_database),
    "db-upgrade-database-not-listening": (
        ["db", "upgrade"],
        "PIGEON_DATABASE_URL",
        _unreachable_database,
    ),
    "api-malformed-database-url": (
        ["api"],
        "PIGEON_DATABASE_URL",
        lambda: "postgresql://postgres@127.0.0.1:port/test",
    ),
    "api-malformed-bus-url": (["api"], "PIGEON_BUS_URL", lambda: "kafka://broker-without-port"),
    "api-postgres-with-the-sqlite-bus": (
        ["api"],
        "PIGEON_BUS_URL",
        lambda: "sqlite:///pigeon.db",
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", [KAFKA_POSTGRES])
@pytest.mark.parametrize(
    ("command", "setting", "value"),
    KAFKA_POSTGRES_MISTAKES.values(),
    ids=KAFKA_POSTGRES_MISTAKES.keys(),
)
def test_a_wrong_or_unreachable_url_fails_fast_with_one_line_naming_the_setting(
    cluster: PigeonCluster, command: list[str], setting: str, value: Callable[[], str]
) -> None:
    """Kafka + PostgreSQL: a bad or dead URL exits 2 with one 'pigeon: error: SETTING' line."""
    done = cluster.cli(*command, env={setting: value()}, within=60)

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"pigeon: error: {setting}: "), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(60)
def test_the_outbox_relay_refuses_the_embedded_bus_with_one_line(cluster: PigeonCluster) -> None:
    """'pigeon worker outbox-relay' on the SQLite stack says it is not needed, naming the bus."""
    done = cluster.cli("worker", "outbox-relay", within=30)

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pigeon: error: PIGEON_BUS_URL: "), done.stderr
