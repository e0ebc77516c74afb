"""Pigeon as real processes on 127.0.0.1: start, wait until ready, look inside, stop by PID.

Used by ``benchmarks/bench.py`` and by the end-to-end tests, on either stack
(see :mod:`harness.stacks`): on ``sqlite`` the store and the event bus
share one SQLite file in the cluster's temporary folder; on ``kafka-postgres``
the cluster starts its own Tansu broker and makes its own PostgreSQL schema,
and stops and drops them in :meth:`Cluster.stop`.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.processes import (
    HOST,
    LoopbackServices,
    Proc,
    cpu_seconds,
    free_port,
    pigeon_command,
)
from harness.stacks import (
    KAFKA_PARTITIONS,
    KAFKA_POSTGRES,
    SQLITE,
    STACKS,
    PostgresSchema,
    database_url,
    group_covers,
    kafka_env,
    latest_assignment,
    tansu_binary,
    tansu_command,
)
from pigeon.bootstrap import CONSUMERS, RELAY, SUBSCRIPTIONS
from pigeon.services.dead_letter_recorder import GROUP as DEAD_LETTER_GROUP

#: worker name -> the (group, topic) pairs of the pipeline it consumes, read from the
#: worker topology (the dead-letter recorder's subscriptions are not the pipeline's)
WORKER_GROUPS = {
    worker: [(s.group, s.topic) for s in subs if s.group != DEAD_LETTER_GROUP]
    for worker, subs in SUBSCRIPTIONS.items()
}
WORKERS = CONSUMERS
RELAY_READY_LINE = "outbox relay: active"
BROKER = "kafka"
#: notification statuses after which nothing more happens to a notification
FINAL_STATUSES = ("delivered", "undelivered", "failed")


@dataclass
class Cluster(LoopbackServices):
    """Pigeon processes sharing one store, one bus and one set of free ports."""

    api_key: str = ""
    #: ``sqlite`` or ``kafka-postgres``
    stack: str = SQLITE
    #: where ``kafka-postgres`` makes its schema (``PIGEON_BENCH_DATABASE_URL``)
    database_base_url: str = field(default_factory=database_url)
    #: extra ``PIGEON_*`` settings every process gets (e.g. ``PIGEON_SENDER_CONCURRENCY``)
    settings: dict[str, str] = field(default_factory=dict)
    kafka_port: int = 0
    schema: PostgresSchema | None = None

    def __post_init__(self) -> None:
        if self.stack not in STACKS:
            raise ValueError(f"unknown stack {self.stack!r}; choose from {', '.join(STACKS)}")

    @property
    def kafka(self) -> bool:
        """True on the Kafka + PostgreSQL stack (which also needs the outbox relay)."""
        return self.stack == KAFKA_POSTGRES

    @property
    def data_dir(self) -> Path:
        """The data folder (SQLite file, dev key)."""
        return self.root / "data"

    @property
    def db_path(self) -> Path:
        """The SQLite file of the store and the bus (``sqlite`` stack)."""
        return self.data_dir / "pigeon.db"

    @property
    def broker_url(self) -> str:
        """``kafka://127.0.0.1:PORT`` of this cluster's broker."""
        return f"kafka://{HOST}:{self.kafka_port}"

    def env(self) -> dict[str, str]:
        """The environment every process gets: ports, store and bus, schema migration."""
        env = super().env()
        env.update(
            PIGEON_DATA_DIR=str(self.data_dir),
            PIGEON_API_HOST=HOST,
            PIGEON_API_PORT=str(self.api_port),
            # a fresh database: the first process (keys create) brings the schema up to date
            PIGEON_AUTO_MIGRATE="true",
        )
        if self.kafka:
            if self.schema is None:
                raise RuntimeError("the cluster's PostgreSQL schema is not made yet: prepare()")
            env.update(kafka_env(self.broker_url, self.schema.url))
        else:
            sqlite_url = f"sqlite:///{self.db_path}"
            env.update(PIGEON_DATABASE_URL=sqlite_url, PIGEON_BUS_URL=sqlite_url)
        env.update(self.settings)
        return env

    # -- setting up --------------------------------------------------------
    async def prepare(self) -> None:
        """Start the stack's own services (Kafka: a broker and a schema) and create a key."""
        if self.kafka:
            self.schema = PostgresSchema(self.database_base_url)
            await asyncio.to_thread(self.schema.create)
            await self._start_broker()
        await asyncio.to_thread(self.create_key)

    async def _start_broker(self, attempts: int = 3, within: float = 10.0) -> None:
        binary = tansu_binary()
        last = ""
        for _ in range(attempts):
            self.kafka_port = free_port()
            proc = self.spawn_command(BROKER, tansu_command(binary, HOST, self.kafka_port))
            deadline = time.monotonic() + within
            while time.monotonic() < deadline and proc.popen.poll() is None:
                if _port_open(self.kafka_port):
                    break
                await asyncio.sleep(0.02)
            # a taken port is no error exit: Tansu logs "Address in use" and exits 0
            await asyncio.sleep(0.1)
            if proc.popen.poll() is None and _port_open(self.kafka_port):
                return
            last = proc.tail()
            await asyncio.to_thread(super().stop, BROKER)
        raise RuntimeError(f"the Tansu broker did not start after {attempts} attempts:\n{last}")

    def create_key(self) -> str:
        """Create the benchmark account's API key (``pigeon keys create``)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            pigeon_command("keys", "create", "--account", "bench"),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        self.api_key = next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("api key")
        )
        return self.api_key

    def spawn(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> Proc:
        """Start ``pigeon ARGS`` as the process called ``name``.

        On Kafka, workers log at INFO: their "assigned" lines are how the
        benchmark knows they hold their partitions.
        """
        env = dict(extra_env or {})
        if self.kafka and args and args[0] in {"worker", "run"}:
            env.setdefault("PIGEON_LOG_LEVEL", "INFO")
        return self.spawn_command(name, pigeon_command(*args), env)

    # -- readiness ---------------------------------------------------------
    async def wait_worker(self, worker: str, within: float = 30.0, *, proc: str = "") -> None:
        """Wait until ``worker`` (process ``proc``, default its name) holds all its partitions."""
        if worker == RELAY:
            await self._wait(lambda: RELAY_READY_LINE in self._log(proc or worker), worker, within)
            return
        await self.wait_members(worker, [proc or worker], within)

    async def wait_members(self, worker: str, procs: list[str], within: float = 30.0) -> None:
        """Wait until the processes ``procs`` of ``worker`` share all its partitions, each some.

        SQLite: every partition is leased, to exactly ``len(procs)`` members.
        Kafka: each process's latest assignment (from its log) is non-empty, and
        together they cover every partition once.
        """

        pairs = WORKER_GROUPS[worker]

        def ready() -> bool:
            return all(self._members_hold_all(group, topic, procs) for group, topic in pairs)

        await self._wait(ready, f"{len(procs)} x {worker}", within)

    async def _wait(self, ready: Callable[[], bool], what: str, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            self.check_alive()
            if await asyncio.to_thread(ready):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not join its group within {within:.0f}s")
            await asyncio.sleep(0.05)

    def _log(self, name: str) -> str:
        proc = self.procs.get(name)
        if proc is None:
            return ""
        try:
            return proc.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _members_hold_all(self, group: str, topic: str, procs: list[str]) -> bool:
        if self.kafka:
            assignments = [latest_assignment(self._log(p), group, topic) for p in procs]
            return group_covers(assignments, KAFKA_PARTITIONS)
        try:
            with self.read_db() as conn:
                (parts,) = conn.execute(
                    "SELECT partitions FROM bus_topics WHERE name = ?", (topic,)
                ).fetchone() or (None,)
                held, members = conn.execute(
                    "SELECT count(*), count(DISTINCT member) FROM bus_leases "
                    "WHERE grp = ? AND topic = ? AND expires_at > ?",
                    (group, topic, time.time()),
                ).fetchone()
        except sqlite3.Error:
            return False
        return parts is not None and held >= parts and members == len(procs)

    # -- looking inside ------------------------------------------------------
    def read_db(self) -> sqlite3.Connection:
        """A read-only connection to the SQLite file (``sqlite`` stack)."""
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)

    def lag(self) -> dict[str, int]:
        """Work not done yet, per ``group/topic``.

        SQLite: log entries past each group's committed position. Kafka +
        PostgreSQL (Tansu's end offsets are wrong, so the broker is not asked):
        the work as the store sees it - outbox rows not yet published,
        notifications not yet metered, not yet ``queued`` by the status
        projector, not yet attempted by the sender (``accepted``/``queued``),
        and attempted but not final yet (``sending``/``sent``).
        """
        if self.kafka:
            return self._store_lag()
        lags: dict[str, int] = {}
        with self.read_db() as conn:
            for pairs in WORKER_GROUPS.values():
                for group, topic in pairs:
                    (count,) = conn.execute(
                        "SELECT count(*) FROM bus_log l LEFT JOIN bus_offsets o "
                        "ON o.grp = ? AND o.topic = l.topic AND o.partition = l.partition "
                        "WHERE l.topic = ? AND l.id > COALESCE(o.position, 0)",
                        (group, topic),
                    ).fetchone()
                    lags[f"{group}/{topic}"] = int(count)
        return lags

    def _store_lag(self) -> dict[str, int]:
        assert self.schema is not None
        ((outbox, unmetered, accepted, unsent, in_flight),) = self.schema.query(
            "SELECT (SELECT count(*) FROM outbox), "
            "(SELECT count(*) FROM notifications) "
            "  - (SELECT COALESCE(sum(messages), 0) FROM usage_daily), "
            "count(*) FILTER (WHERE status = 'accepted'), "
            "count(*) FILTER (WHERE status IN ('accepted', 'queued')), "
            "count(*) FILTER (WHERE status IN ('sending', 'sent')) "
            "FROM notifications"
        )
        return {
            f"{RELAY}/outbox": int(outbox),
            "usage-meter/sms.requested": int(unmetered),
            "status-projector/sms.requested": int(accepted),
            "sms-sender/sms.requested": int(unsent),
            "status-projector/notification.status": int(in_flight),
        }

    def status_counts(self) -> dict[str, int]:
        """Notifications per stored status (what the status projector made of them)."""
        query = "SELECT status, count(*) FROM notifications GROUP BY status"
        if self.kafka:
            assert self.schema is not None
            return {str(status): int(count) for status, count in self.schema.query(query)}
        with self.read_db() as conn:
            return {str(status): int(count) for status, count in conn.execute(query)}

    def cpu(self) -> dict[str, float]:
        """CPU seconds per process; on PostgreSQL also each server process of this schema."""
        usage = super().cpu()
        if self.kafka and self.schema is not None and self.schema.created:
            try:
                pids = self.schema.backend_pids()
            except Exception:  # a measurement aid only: never fail a run for it
                pids = []
            for pid in pids:
                usage[f"postgres#{pid}"] = cpu_seconds(pid)
        return usage

    # -- starting and stopping -------------------------------------------------
    def relays(self) -> tuple[str, ...]:
        """The processes the stack needs besides the workers: the outbox relay on Kafka."""
        return (RELAY,) if self.kafka else ()

    async def start_split(self, workers: tuple[str, ...] = WORKERS, *, relay: bool = True) -> None:
        """Sandbox, API and each worker as its own process (plus, on Kafka, the relay)."""
        processes = (*(self.relays() if relay else ()), *workers)
        self.spawn("sandbox", "sandbox")
        self.spawn("api", "api")
        for worker in processes:
            self.spawn(worker, "worker", worker)
        await self.wait_http(f"{self.sandbox_url}/sandbox/health")
        await self.wait_http(f"{self.api_url}/healthz")
        for worker in processes:
            await self.wait_worker(worker)

    async def start_single(self) -> None:
        """Everything in one ``pigeon run`` process (with the relay on Kafka)."""
        self.spawn("run", "run")
        await self.wait_http(f"{self.sandbox_url}/sandbox/health")
        await self.wait_http(f"{self.api_url}/healthz")
        for worker in (*self.relays(), *WORKERS):
            await self.wait_worker(worker, proc="run")

    def stop(self, *names: str) -> None:
        """Stop the named processes; with no name, everything, then the broker and the schema.

        Pigeon's processes stop first, so that they can leave their groups
        while the broker still answers.
        """
        if names:
            super().stop(*names)
            return
        super().stop(*[name for name in self.procs if name != BROKER])
        super().stop(BROKER)
        if self.schema is not None:
            self.schema.drop()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0
