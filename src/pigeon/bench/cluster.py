"""Pigeon as real processes on 127.0.0.1: start, wait until ready, look inside, stop by PID.

Used by ``pigeon bench`` and by ``benchmarks/bench_pipeline.py``. The store and
the event bus share one SQLite file in the cluster's temporary folder.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pigeon.bench.processes import HOST, LoopbackServices, Proc, pigeon_command

#: worker name -> the (group, topic) pairs it consumes
WORKER_GROUPS = {
    "sms-sender": [("sms-sender", "sms.requested")],
    "usage-meter": [("usage-meter", "sms.requested")],
    "status-projector": [
        ("status-projector", "notification.status"),
        ("status-projector", "sms.requested"),
    ],
}
WORKERS = tuple(WORKER_GROUPS)


@dataclass
class Cluster(LoopbackServices):
    """Pigeon processes sharing one data folder and one set of free ports."""

    api_key: str = ""

    @property
    def data_dir(self) -> Path:
        """The data folder (SQLite file, dev key)."""
        return self.root / "data"

    @property
    def db_path(self) -> Path:
        """The SQLite file of the store and the bus."""
        return self.data_dir / "pigeon.db"

    def env(self) -> dict[str, str]:
        """The environment every process gets: ports, SQLite files, schema migration."""
        env = super().env()
        database_url = f"sqlite:///{self.db_path}"
        env.update(
            PIGEON_DATA_DIR=str(self.data_dir),
            PIGEON_DATABASE_URL=database_url,
            PIGEON_BUS_URL=database_url,
            PIGEON_API_HOST=HOST,
            PIGEON_API_PORT=str(self.api_port),
            # a fresh database: the first process (keys create) brings the schema up to date
            PIGEON_AUTO_MIGRATE="true",
        )
        return env

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

    def spawn(self, name: str, *args: str) -> Proc:
        """Start ``pigeon ARGS`` as the process called ``name``."""
        return self.spawn_command(name, pigeon_command(*args))

    async def wait_worker(self, worker: str, within: float = 30.0) -> None:
        """Wait until ``worker`` holds a lease on every partition of its topics."""
        deadline = time.monotonic() + within
        while True:
            self.check_alive()
            if all(self._holds_all(group, topic) for group, topic in WORKER_GROUPS[worker]):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {worker} did not join its group within {within:.0f}s")
            await asyncio.sleep(0.05)

    def _holds_all(self, group: str, topic: str) -> bool:
        try:
            with self.read_db() as conn:
                (parts,) = conn.execute(
                    "SELECT partitions FROM bus_topics WHERE name = ?", (topic,)
                ).fetchone() or (None,)
                (held,) = conn.execute(
                    "SELECT count(*) FROM bus_leases WHERE grp = ? AND topic = ? "
                    "AND expires_at > ?",
                    (group, topic, time.time()),
                ).fetchone()
        except sqlite3.Error:
            return False
        return parts is not None and held >= parts

    def read_db(self) -> sqlite3.Connection:
        """A read-only connection to the SQLite file (for readiness and lag)."""
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)

    def lag(self) -> dict[str, int]:
        """Unconsumed events per ``group/topic`` (log entries past the group's positions)."""
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

    def status_counts(self) -> dict[str, int]:
        """Notifications per stored status (what the status projector made of them)."""
        with self.read_db() as conn:
            rows = conn.execute("SELECT status, count(*) FROM notifications GROUP BY status")
            return {str(status): int(count) for status, count in rows}

    async def start_split(self, workers: tuple[str, ...] = WORKERS) -> None:
        """Sandbox, API and each worker as its own process."""
        self.spawn("sandbox", "sandbox")
        self.spawn("api", "api")
        for worker in workers:
            self.spawn(worker, "worker", worker)
        await self.wait_http(f"{self.sandbox_url}/sandbox/health")
        await self.wait_http(f"{self.api_url}/healthz")
        for worker in workers:
            await self.wait_worker(worker)

    async def start_single(self) -> None:
        """Everything in one ``pigeon run`` process."""
        self.spawn("run", "run")
        await self.wait_http(f"{self.sandbox_url}/sandbox/health")
        await self.wait_http(f"{self.api_url}/healthz")
        for worker in WORKERS:
            await self.wait_worker(worker)
