"""What the CLI loads: every process of 'pigeon run' starts from its imports."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_loads_no_httpx() -> None:
    """`pigeon run` forks its workers from the CLI's imports; httpx (only `pigeon status`
    and the Python client need it) would cost each process ~10 MB."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pigeon.cli; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('httpx', 'rich', 'pygments')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
