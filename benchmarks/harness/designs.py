"""The two designs under test, each as real processes on 127.0.0.1.

``pigeon``: ``pigeon sandbox``, ``pigeon api`` and one process per worker, on
one stack: SQLite files in a temporary folder (the embedded default), or a
Tansu broker of its own, a fresh PostgreSQL schema and ``pigeon worker
outbox-relay`` (``kafka-postgres``). Each stack is a run of its own
(``pigeon-sqlite``, ``pigeon-kafka-postgres``).
``direct``: ``pigeon sandbox``, the baseline SMS service and the baseline
notification service from ``benchmarks/direct`` in the source checkout.

Both answer ``POST /v1/notifications`` with the same request body, and both
send through the same sandbox, so a run can treat them alike. The "sender" is
what the outage scenario stops: Pigeon's ``sms-sender`` worker, or the direct
design's SMS service.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.cluster import Cluster
from harness.options import DESIGNS, run_stack
from harness.processes import HOST, LoopbackServices, free_port, pigeon_command
from harness.stacks import SQLITE
from pigeon.errors import ConfigurationError

_BASELINE_MARKER = Path("direct") / "__main__.py"


class Deployment(Protocol):
    """One design, started and stopped by the benchmark."""

    name: str

    @property
    def api_url(self) -> str:
        """Base URL that answers ``POST /v1/notifications``."""
        ...

    @property
    def api_key(self) -> str:
        """The bearer key it accepts."""
        ...

    @property
    def sandbox_url(self) -> str:
        """Base URL of its sandbox provider."""
        ...

    async def start(self) -> None:
        """Start every process and wait until each is ready."""
        ...

    async def stop_sender(self) -> None:
        """Stop the part that talks to the provider (the outage)."""
        ...

    async def start_sender(self) -> None:
        """Start it again and wait until it is ready."""
        ...

    def check_alive(self) -> None:
        """Raise if a process died on its own."""
        ...

    def cpu(self) -> dict[str, float]:
        """CPU seconds per process so far."""
        ...

    def stop(self) -> None:
        """Stop every process (by PID)."""
        ...


def find_baseline(explicit: Path | None = None) -> Path:
    """The ``benchmarks/`` folder that holds the direct baseline, or a ConfigurationError.

    Looked for in ``explicit`` when given, else beside this harness (the
    harness and the baseline live in the same ``benchmarks/`` folder).
    """
    candidate = explicit if explicit is not None else Path(__file__).resolve().parents[1]
    if (candidate / _BASELINE_MARKER).is_file():
        return candidate.resolve()
    raise ConfigurationError(
        "--baseline-dir",
        f"the direct baseline ({_BASELINE_MARKER}) is not in {candidate}; pass "
        "--baseline-dir PATH/TO/benchmarks (the folder holding direct/)",
    )


@dataclass
class PigeonDeployment:
    """Pigeon, split into its processes (sandbox, API, three workers; the relay on Kafka)."""

    root: Path
    name: str = "pigeon-sqlite"
    stack: str = SQLITE
    cluster: Cluster = field(init=False)

    def __post_init__(self) -> None:
        self.cluster = Cluster(self.root, stack=self.stack)

    @property
    def api_url(self) -> str:
        """Base URL of Pigeon's API."""
        return self.cluster.api_url

    @property
    def api_key(self) -> str:
        """The benchmark account's key."""
        return self.cluster.api_key

    @property
    def sandbox_url(self) -> str:
        """Base URL of the sandbox."""
        return self.cluster.sandbox_url

    async def start(self) -> None:
        """Set up the stack (Kafka: broker, schema), create a key, start every process."""
        await self.cluster.prepare()
        await self.cluster.start_split()

    async def stop_sender(self) -> None:
        """Stop ``pigeon worker sms-sender`` (SIGTERM: it leaves its group)."""
        await asyncio.to_thread(self.cluster.stop, "sms-sender")

    async def start_sender(self) -> None:
        """Start a new sender and wait until it holds every partition."""
        self.cluster.spawn("sms-sender", "worker", "sms-sender")
        await self.cluster.wait_worker("sms-sender")

    def check_alive(self) -> None:
        """Raise if a process died."""
        self.cluster.check_alive()

    def cpu(self) -> dict[str, float]:
        """CPU seconds per process."""
        return self.cluster.cpu()

    def stop(self) -> None:
        """Stop every process (then the broker, and drop the schema)."""
        self.cluster.stop()


@dataclass
class DirectDeployment(LoopbackServices):
    """The direct baseline: sandbox, SMS service and notification service."""

    baseline_dir: Path = Path("benchmarks")
    name: str = "direct"
    sms_port: int = field(default_factory=free_port)
    api_key: str = field(default_factory=lambda: "direct_" + secrets.token_urlsafe(24))

    @property
    def sms_url(self) -> str:
        """Base URL of the SMS service."""
        return f"http://{HOST}:{self.sms_port}"

    def env(self) -> dict[str, str]:
        """The provider settings, with the baseline importable."""
        return super().env() | {"PYTHONPATH": str(self.baseline_dir)}

    def _spawn_sms_service(self) -> None:
        argv = [sys.executable, "-m", "direct", "sms-service", "--port", str(self.sms_port)]
        self.spawn_command("sms-service", argv)

    async def start(self) -> None:
        """Start the three processes and wait until each answers."""
        self.spawn_command("sandbox", pigeon_command("sandbox"))
        self._spawn_sms_service()
        self.spawn_command(
            "notification-service",
            [
                sys.executable,
                "-m",
                "direct",
                "notification-service",
                "--port",
                str(self.api_port),
                "--sms-url",
                self.sms_url,
                "--api-key",
                self.api_key,
            ],
        )
        await self.wait_http(f"{self.sandbox_url}/sandbox/health")
        await self.wait_http(f"{self.sms_url}/healthz")
        await self.wait_http(f"{self.api_url}/healthz")

    async def stop_sender(self) -> None:
        """Stop the SMS service."""
        await asyncio.to_thread(self.stop, "sms-service")

    async def start_sender(self) -> None:
        """Start the SMS service again and wait until it answers."""
        self._spawn_sms_service()
        await self.wait_http(f"{self.sms_url}/healthz")


def deployment(run: str, root: Path, baseline_dir: Path) -> Deployment:
    """A fresh, not yet started deployment of ``run`` with its files under ``root``.

    ``run`` is ``direct`` or Pigeon on a stack (``pigeon-sqlite``, ``pigeon-kafka-postgres``).
    """
    stack = run_stack(run)
    if stack is not None:
        return PigeonDeployment(root, name=run, stack=stack)
    if run == "direct":
        return DirectDeployment(root, baseline_dir=baseline_dir)
    raise ValueError(f"unknown design {run!r}; choose from {', '.join(DESIGNS)}")
