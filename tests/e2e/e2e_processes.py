"""Real ``pigeon`` processes for end-to-end tests: start, wait until ready, stop, kill -9.

Every process runs the installed console script (``pigeon``) with its output
in files under the test's ``tmp_path``, so a failing test can show what each
process said. Processes are only ever signalled by their own PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from harness.processes import PIGEON as PIGEON_SCRIPT
from harness.processes import clean_environ, start_process, stop_processes
from tests.integration.kafka_broker import KafkaBroker
from tests.support import eventually, free_port

PIGEON = str(PIGEON_SCRIPT)
START_WITHIN = 30.0
STOP_WITHIN = 15.0

T = TypeVar("T")


def _tail(path: Path, limit: int = 6_000) -> str:
    if not path.exists():
        return "<no file>"
    text = path.read_text(errors="replace")
    return text if len(text) <= limit else "...\n" + text[-limit:]


class PigeonProcess:
    """One running ``pigeon ...`` command with its logs in files."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log_dir: Path,
        ready_url: str | None = None,
        ready_line: str | None = None,
    ) -> None:
        self.name = name
        self.args = [PIGEON, *args]
        self.ready_url = ready_url
        self.ready_line = ready_line
        self.stdout_path = log_dir / f"{name}.stdout.log"
        self.stderr_path = log_dir / f"{name}.stderr.log"
        # its own session: a Ctrl-C at the terminal reaches pytest only, and pytest's
        # teardown decides what to stop
        self._popen = start_process(
            self.args, env=env, cwd=cwd, stdout=self.stdout_path, stderr=self.stderr_path
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or ``None`` while it runs."""
        return self._popen.poll()

    @property
    def running(self) -> bool:
        """True until the process has exited."""
        return self.returncode is None

    def stdout(self) -> str:
        """Everything written to stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        """Everything written to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        """Both streams, labelled, for failure messages."""
        state = "running" if self.running else f"exited with {self.returncode}"
        return (
            f"===== {self.name} (pid {self.pid}, {state}): {' '.join(self.args[1:])}\n"
            f"----- stdout\n{_tail(self.stdout_path)}\n"
            f"----- stderr\n{_tail(self.stderr_path)}\n"
        )

    async def wait_ready(self, within: float = START_WITHIN) -> None:
        """Wait until the health URL answers 200 or the ready line is logged."""
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:

            async def ready() -> bool:
                if not self.running:
                    raise AssertionError(f"{self.name} exited before it was ready\n{self.logs()}")
                return await self._is_ready(client)

            try:
                await eventually(ready, within, 0.05)
            except AssertionError as exc:
                if "exited before" in str(exc):
                    raise
                raise AssertionError(f"{self.name} not ready in {within}s\n{self.logs()}") from None

    async def _is_ready(self, client: httpx.AsyncClient) -> bool:
        if self.ready_line is not None and self.ready_line not in self.stdout() + self.stderr():
            return False
        if self.ready_url is not None:
            try:
                response = await client.get(self.ready_url)
            except httpx.TransportError:
                return False
            return response.status_code == 200
        return True

    def request_stop(self) -> None:
        """Send SIGTERM without waiting."""
        if self.running:
            self._popen.send_signal(signal.SIGTERM)

    def terminate(self, within: float = STOP_WITHIN) -> int:
        """Send SIGTERM and wait for the exit code."""
        self.request_stop()
        return self._popen.wait(within)

    def kill9(self) -> int:
        """Send SIGKILL: no cleanup of any kind, like a crash or an OOM kill."""
        if self.running:
            self._popen.send_signal(signal.SIGKILL)
        return self._popen.wait(STOP_WITHIN)

    def cleanup(self) -> None:
        """Stop the process however it takes: SIGTERM, then SIGKILL."""
        stop_processes([self._popen])


#: the stacks a cluster can run on
SQLITE = "sqlite"
KAFKA_POSTGRES = "kafka+postgres"
STACKS = (SQLITE, KAFKA_POSTGRES)


class PigeonCluster:
    """Pigeon processes sharing one store, one bus, one API port and one sandbox port.

    The store and the bus are one SQLite file in the data folder, or - given a
    PostgreSQL URL and a Kafka broker - a PostgreSQL schema and Kafka topics.
    """

    def __init__(
        self, root: Path, *, database_url: str | None = None, broker: KafkaBroker | None = None
    ) -> None:
        self.root = root
        self.broker = broker
        self.database_url = database_url
        self.data_dir = root / "data"
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.sandbox_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.env = {
            **clean_environ(),
            "PIGEON_DATA_DIR": str(self.data_dir),
            "PIGEON_API_HOST": "127.0.0.1",
            "PIGEON_API_PORT": str(self.api_port),
            "PIGEON_SANDBOX_HOST": "127.0.0.1",
            "PIGEON_SANDBOX_PORT": str(self.sandbox_port),
            "PIGEON_SMS_PROVIDER_URL": self.sandbox_url,
            "PIGEON_PUBLIC_URL": self.api_url,
            "PIGEON_BUS_LEASE_SECONDS": "1",
            "PIGEON_AUTO_MIGRATE": "true",
            "PIGEON_RETRY_BASE_SECONDS": "0.2",
            "PIGEON_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        if database_url is not None:
            self.env["PIGEON_DATABASE_URL"] = database_url
        if broker is not None:
            self.env.update(
                {
                    "PIGEON_BUS_URL": broker.url,
                    "PIGEON_KAFKA_IDEMPOTENCE": "false",  # Tansu has no idempotent producer
                    "PIGEON_KAFKA_SESSION_TIMEOUT_MS": "3000",  # group joins take half of it
                    # Tansu holds an empty fetch to its end, even when a message comes
                    "PIGEON_KAFKA_FETCH_MAX_WAIT_MS": "10",
                }
            )
        self.processes: list[PigeonProcess] = []
        self._names: dict[str, int] = {}

    def spawn(
        self,
        label: str,
        *args: str,
        ready_url: str | None = None,
        ready_line: str | None = None,
        env: dict[str, str] | None = None,
    ) -> PigeonProcess:
        """Start ``pigeon ARGS`` without waiting; the fixture stops it at the end."""
        count = self._names.get(label, 0) + 1
        self._names[label] = count
        process = PigeonProcess(
            label if count == 1 else f"{label}.{count}",
            args,
            env={**self.env, **(env or {})},
            cwd=self.root,
            log_dir=self.log_dir,
            ready_url=ready_url,
            ready_line=ready_line,
        )
        self.processes.append(process)
        return process

    def sandbox(self) -> PigeonProcess:
        """``pigeon sandbox``: the fake SMS provider."""
        return self.spawn("sandbox", "sandbox", ready_url=f"{self.sandbox_url}/sandbox/health")

    def api(self) -> PigeonProcess:
        """``pigeon api``: the HTTP API alone."""
        return self.spawn("api", "api", ready_url=f"{self.api_url}/healthz")

    def worker(self, name: str) -> PigeonProcess:
        """``pigeon worker NAME``."""
        return self.spawn(name, "worker", name, ready_line=f"worker {name} started")

    @property
    def stack(self) -> str:
        """``"sqlite"`` or ``"kafka+postgres"``."""
        return KAFKA_POSTGRES if self.broker is not None else SQLITE

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one query on the cluster's PostgreSQL schema (Kafka + PostgreSQL stack only)."""
        import psycopg

        assert self.database_url is not None, "the SQLite stack has no PostgreSQL schema"
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def relays(self) -> list[PigeonProcess]:
        """The outbox relay the stack needs besides the workers: one with Kafka, none else."""
        return [self.worker("outbox-relay")] if self.broker is not None else []

    def run_all_in_one(self) -> PigeonProcess:
        """``pigeon run``: API, workers and sandbox in one process."""
        return self.spawn(
            "run", "run", ready_url=f"{self.api_url}/healthz", ready_line="Pigeon is running."
        )

    async def run_with_dev_key(self) -> tuple[PigeonProcess, str]:
        """``pigeon run``, started and ready, and the dev account's key it made."""
        process = self.run_all_in_one()
        await self.start(process)
        return process, (self.data_dir / "dev-api-key").read_text().strip()

    async def start(self, *processes: PigeonProcess) -> None:
        """Wait until every one of ``processes`` is ready (they start in parallel)."""
        await asyncio.gather(*(p.wait_ready() for p in processes))

    def cli(
        self, *args: str, env: dict[str, str] | None = None, within: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a short ``pigeon`` command to completion and capture its output."""
        return subprocess.run(
            [PIGEON, *args],
            env={**self.env, **(env or {})},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=within,
            check=False,
        )

    def create_api_key(self, account: str) -> str:
        """``pigeon keys create --account ACCOUNT``; the key it prints."""
        done = self.cli("keys", "create", "--account", account)
        assert done.returncode == 0, f"keys create failed:\n{done.stdout}\n{done.stderr}"
        for line in done.stdout.splitlines():
            if line.startswith("api key: "):
                return line.removeprefix("api key: ").strip()
        raise AssertionError(f"no 'api key:' line in:\n{done.stdout}")

    def api_client(self, key: str) -> httpx.AsyncClient:
        """An HTTP client for the API, authenticated with ``key``."""
        return httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30.0,
            trust_env=False,
            # idle connections retire well before the server's 5 s keep-alive
            # closes them, so a reused connection never races that close
            limits=httpx.Limits(max_connections=32, keepalive_expiry=1.0),
        )

    def sandbox_client(self) -> httpx.AsyncClient:
        """An HTTP client for the sandbox's ``/sandbox`` control routes."""
        return httpx.AsyncClient(base_url=self.sandbox_url, timeout=30.0, trust_env=False)

    def logs(self) -> str:
        """Every process's output, for a failing test's report."""
        return "\n".join(p.logs() for p in self.processes) or "<no processes started>"

    def stop_all(self) -> None:
        """Stop every process this cluster started: SIGTERM to all, then SIGKILL stragglers."""
        running = [p for p in self.processes if p.running]
        for process in running:
            process.request_stop()
        for process in running:
            process.cleanup()


@contextlib.asynccontextmanager
async def in_background(work: Awaitable[T]) -> AsyncIterator[asyncio.Future[T]]:
    """Run ``work`` while the block runs; cancel it if the block fails before it is done."""
    future = asyncio.ensure_future(work)
    try:
        yield future
    finally:
        if not future.done():
            future.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await future


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Call ``probe`` until ``done`` holds for its answer; that answer, or a failure."""
    seen: list[T] = []

    async def holds() -> bool:
        seen[:] = [await probe()]
        return done(seen[0])

    try:
        await eventually(holds, within, interval)
    except AssertionError:
        shown = repr(seen[0]) if seen else "nothing"
        shown = shown if len(shown) <= 500 else shown[:500] + "..."
        raise AssertionError(f"{what}: not in {within}s; last seen {shown}") from None
    return seen[0]


async def inbox(sandbox: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The sandbox's accepted messages, oldest first."""
    response = await sandbox.get("/sandbox/messages")
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def send_sms(api: httpx.AsyncClient, to: str, body: str) -> httpx.Response:
    """``POST /v1/notifications`` for one SMS."""
    return await api.post("/v1/notifications", json={"channel": "sms", "to": to, "body": body})


async def usage_today(api: httpx.AsyncClient) -> tuple[int, int]:
    """``(messages, segments)`` metered for today (UTC)."""
    today = datetime.now(UTC).date().isoformat()
    response = await api.get("/v1/usage", params={"from": today, "to": today})
    response.raise_for_status()
    days = [d for d in response.json() if d["date"] == today]
    if not days:
        return 0, 0
    return int(days[0]["messages"]), int(days[0]["segments"])


async def statuses(api: httpx.AsyncClient, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``GET /v1/notifications/{id}`` for each id, a few at a time."""
    slots = asyncio.Semaphore(16)

    async def one(notification_id: str) -> dict[str, Any]:
        async with slots:
            response = await api.get(f"/v1/notifications/{notification_id}")
        response.raise_for_status()
        detail: dict[str, Any] = response.json()
        return detail

    details = await asyncio.gather(*(one(i) for i in ids))
    return dict(zip(ids, details, strict=True))


#: ``pigeon worker sms-sender`` never starts its Twilio provider, so it sends nothing.
SENDER_NOT_STARTED_BUG = (
    "BUG: bootstrap.Pigeon.workers() starts self._providers before builders[name]() "
    "creates the sender's provider, so 'pigeon worker sms-sender' fails every send with "
    "'the Twilio provider is not started' (pigeon run works only by accident)"
)
