"""Mistakes in ``pigeon`` arguments and settings, checked in-process through the entry point.

Each case must fail before anything starts: one ``pigeon: error:`` line on
stderr naming the mistake, exit status 2. (Real processes prove the same for a
few of them in tests/e2e/test_e2e_bad_input_cli.py.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pigeon.cli import main

#: argv, environment, and what the one error line must name
MISTAKES: dict[str, tuple[list[str], dict[str, str], str]] = {
    "log-level-unknown": (["api"], {"PIGEON_LOG_LEVEL": "LOUD"}, "PIGEON_LOG_LEVEL"),
    "log-level-empty": (["worker", "sms-sender"], {"PIGEON_LOG_LEVEL": ""}, "PIGEON_LOG_LEVEL"),
    "ttl-infinite": (["api"], {"PIGEON_IDEMPOTENCY_TTL_HOURS": "1e999"}, "PIGEON_IDEMPOTENCY_TTL"),
    "ttl-past-a-year": (["api"], {"PIGEON_IDEMPOTENCY_TTL_HOURS": "1e300"}, "PIGEON_IDEMPOTENCY"),
    "timeout-nan": (["run"], {"PIGEON_PROVIDER_TIMEOUT_SECONDS": "nan"}, "PIGEON_PROVIDER_TIME"),
    "retry-infinite": (["run"], {"PIGEON_RETRY_MAX_SECONDS": "inf"}, "PIGEON_RETRY_MAX"),
    "option-not-a-number": (["run", "--port", "notaport"], {}, "'--port'"),
    "option-out-of-range": (["run", "--port", "70000"], {}, "PIGEON_API_PORT"),
    "missing-argument": (["worker"], {}, "'names'"),
    "worker-twice": (["worker", "usage-meter", "usage-meter"], {}, "named twice"),
    "unknown-worker": (["worker", "nope"], {}, "'nope'"),
    "unknown-command": (["frobnicate"], {}, "'frobnicate'"),
    "unknown-option": (["api", "--colour"], {}, "--colour"),
    "missing-option": (["keys", "create"], {}, "'--account'"),
    "sandbox-rate-not-a-number": (["sandbox", "--error-rate", "x"], {}, "'--error-rate'"),
    "sandbox-faults-not-json": (["sandbox", "--faults", "{"], {}, "--faults"),
    "dlq-since-not-a-date": (["dlq", "list", "--since", "yesterday-ish"], {}, "--since"),
    "data-dir-is-a-file": (["api"], {"PIGEON_DATA_DIR": "/dev/null"}, "PIGEON_DATA_DIR"),
    "database-folder-impossible": (
        ["db", "upgrade"],
        {"PIGEON_DATABASE_URL": "sqlite:////proc/no-such/pigeon.db"},
        "PIGEON_DATABASE_URL",
    ),
    "store-folder-impossible": (
        ["keys", "create", "--account", "x"],
        {"PIGEON_DATA_DIR": "/proc/no-such"},
        "PIGEON_DATA_DIR",
    ),
}


@pytest.mark.parametrize(("argv", "env", "named"), MISTAKES.values(), ids=MISTAKES.keys())
def test_a_bad_argument_or_setting_is_one_line_naming_it_and_exit_2(  # noqa: PLR0917 - fixtures
    argv: list[str],
    env: dict[str, str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The entry point turns the mistake into one 'pigeon: error:' line naming it, exit 2."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIGEON_DATA_DIR", str(tmp_path / "data"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["pigeon", *argv])

    with pytest.raises(SystemExit) as exited:
        main()

    lines = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("pigeon: error: "), lines
    assert named in lines[0], lines
    assert not (tmp_path / "data").exists()
