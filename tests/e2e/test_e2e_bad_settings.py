"""Mistakes in settings stop ``pigeon`` at once, with one line that names the setting."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.e2e_processes import PigeonCluster


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
