"""Mistakes in ``pigeon`` arguments and settings: one line naming them, exit 2, nothing created.

Real processes, started all at once and then awaited (each is a fresh Python
interpreter: the start-up is the cost, not the check).
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.e2e.e2e_processes import PIGEON, PigeonCluster

#: argv, environment, and what the one error line must name (the in-process test in
#: tests/unit/test_cli_bad_input.py covers many more; these prove it for real processes)
MISTAKES: dict[str, tuple[list[str], dict[str, str], str]] = {
    "log-level-unknown": (["api"], {"PIGEON_LOG_LEVEL": "LOUD"}, "PIGEON_LOG_LEVEL"),
    "option-not-a-number": (["run", "--port", "notaport"], {}, "'--port'"),
}


def _start(cluster: PigeonCluster, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PIGEON, *argv],
        env={**cluster.env, **env},
        cwd=cluster.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(120)
def test_a_bad_argument_setting_or_busy_port_is_one_line_exit_2_and_nothing_created(
    cluster: PigeonCluster,
) -> None:
    """Every mistake: exit 2, one 'pigeon: error:' line naming it, no traceback, no data folder.

    'pigeon run' on a busy sandbox port used to leave a new database behind.
    """
    with socket.socket() as sandbox:
        sandbox.bind(("127.0.0.1", 0))
        sandbox.listen()
        port = str(sandbox.getsockname()[1])
        # the sandbox port is bound after the API's: this start used to open the database first
        cases = {
            **MISTAKES,
            "run-sandbox-port-busy": (["run"], {"PIGEON_SANDBOX_PORT": port}, port),
        }
        started = {case: _start(cluster, argv, env) for case, (argv, env, _) in cases.items()}

        for case, process in started.items():
            _, stderr = process.communicate(timeout=60)
            lines = stderr.strip().splitlines()
            assert process.returncode == 2, (case, stderr)
            assert len(lines) == 1, (case, stderr)
            assert lines[0].startswith("pigeon: error: "), (case, stderr)
            assert cases[case][2] in lines[0], (case, stderr)
    assert not cluster.data_dir.exists()
