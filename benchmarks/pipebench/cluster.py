"""Pigeon as real processes on 127.0.0.1, each started and stopped by its PID.

Every process goes into :data:`SPAWNED` the moment it exists, so that
:func:`stop_everything` (called from ``finally`` and ``atexit``) stops it even
when the benchmark is interrupted or fails half-way.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

HOST = "127.0.0.1"
#: the venv's console script, next to the interpreter running the benchmark
PIGEON = Path(sys.executable).with_name("pigeon")
CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP_GRACE_SECONDS = 15.0

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

SPAWNED: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process by PID, wait, then SIGKILL the ones still alive."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc in SPAWNED:
            SPAWNED.remove(proc)


def stop_everything() -> None:
    """Stop every process the benchmark started and has not stopped yet."""
    stop_processes(list(SPAWNED))


atexit.register(stop_everything)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy (not idle or I/O wait) since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in first]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / CLK_TCK


@dataclass
class Proc:
    """One Pigeon process."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """Its PID."""
        return self.popen.pid

    def tail(self, lines: int = 15) -> str:
        """The end of its log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass
class Cluster:
    """Pigeon processes sharing one data folder and one set of free ports."""

    root: Path
    api_port: int = field(default_factory=free_port)
    sandbox_port: int = field(default_factory=free_port)
    procs: dict[str, Proc] = field(default_factory=dict)
    api_key: str = ""

    @property
    def data_dir(self) -> Path:
        """The data folder (SQLite file, dev key)."""
        return self.root / "data"

    @property
    def db_path(self) -> Path:
        """The SQLite file of the store and the bus."""
        return self.data_dir / "pigeon.db"

    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        return f"http://{HOST}:{self.api_port}"

    @property
    def sandbox_url(self) -> str:
        """Base URL of the sandbox SMS provider."""
        return f"http://{HOST}:{self.sandbox_port}"

    def env(self) -> dict[str, str]:
        """The environment every process gets: ports, data folder, quiet logs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIGEON_")}
        env.update(
            PIGEON_DATA_DIR=str(self.data_dir),
            PIGEON_API_HOST=HOST,
            PIGEON_API_PORT=str(self.api_port),
            PIGEON_SANDBOX_HOST=HOST,
            PIGEON_SANDBOX_PORT=str(self.sandbox_port),
            PIGEON_SMS_PROVIDER_URL=self.sandbox_url,
            PIGEON_LOG_LEVEL="WARNING",
        )
        return env

    def command(self, *args: str) -> list[str]:
        """The command line running ``pigeon ARGS``."""
        return [str(PIGEON), *args]

    def create_key(self) -> str:
        """Create the benchmark account's API key (``pigeon keys create``)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            self.command("keys", "create", "--account", "bench"),
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
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                self.command(*args),
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        SPAWNED.append(popen)
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def stop(self, *names: str) -> None:
        """Stop the named processes (all when no name is given)."""
        chosen = [self.procs.pop(n) for n in (names or list(self.procs)) if n in self.procs]
        stop_processes([p.popen for p in chosen])

    def check_alive(self) -> None:
        """Fail loudly if one of the processes died."""
        for proc in self.procs.values():
            if proc.popen.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} (pid {proc.pid}) exited with {proc.popen.returncode}:\n"
                    f"{proc.tail()}"
                )

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far per process, by this load generator, and by the machine.

        ``machine`` counts every process, so ``machine`` minus the others is the
        load that something else (another benchmark, a test run) put on the cores.
        """
        usage = {name: cpu_seconds(p.pid) for name, p in self.procs.items()}
        usage["loadgen"] = cpu_seconds(os.getpid())
        usage["machine"] = machine_busy_seconds()
        return usage

    async def wait_http(self, url: str, within: float = 30.0) -> None:
        """Wait until ``url`` answers 200."""
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                self.check_alive()
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not answer within {within:.0f}s")
                await asyncio.sleep(0.05)

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
