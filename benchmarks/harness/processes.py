"""Processes started by the benchmark and the end-to-end tests, each stopped by its own PID.

Every process goes into :data:`SPAWNED` the moment it exists, so that
:func:`stop_everything` (called from ``finally`` and ``atexit``) stops it even
when a benchmark is interrupted or fails half-way. Nothing here ever signals a
process it did not start.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

HOST = "127.0.0.1"
#: the venv's console script, next to the interpreter running the benchmark
PIGEON = Path(sys.executable).with_name("pigeon")
CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP_GRACE_SECONDS = 15.0

SPAWNED: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pigeon_command(*args: str) -> list[str]:
    """The command line running ``pigeon ARGS`` with this interpreter's installation."""
    if PIGEON.exists():
        return [str(PIGEON), *args]
    return [sys.executable, "-c", "from pigeon.cli import main; main()", *args]


def clean_environ() -> dict[str, str]:
    """This process's environment without any ``PIGEON_*`` setting: what a started
    Pigeon process inherits before it gets its own settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIGEON_")}


def start_process(
    argv: list[str],
    *,
    env: dict[str, str],
    stdout: Path,
    stderr: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output appended to files (stderr into ``stdout`` unless
    given), in a session of its own (a Ctrl-C at the terminal reaches only the caller,
    which decides what to stop), and registered in :data:`SPAWNED` at once."""
    with contextlib.ExitStack() as files:
        out = files.enter_context(stdout.open("ab"))
        err: Any = files.enter_context(stderr.open("ab")) if stderr else subprocess.STDOUT
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    SPAWNED.append(popen)
    return popen


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


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of every process below it (``pigeon run``'s workers)."""
    return cpu_seconds(pid) + sum(tree_cpu_seconds(child) for child in _children(pid))


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` now (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid`` now: its private memory plus its share of pages
    it shares with other processes (a page three processes share counts a third in
    each), so summed over processes it counts every page once (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def tree_rss_bytes(pid: int, measure: Callable[[int], int] = rss_bytes) -> int:
    """Memory of ``pid`` and of every process below it, by ``measure`` (RSS; or PSS)."""
    return measure(pid) + sum(tree_rss_bytes(child, measure) for child in _children(pid))


def sandbox_children(pid: int) -> list[int]:
    """The ``pigeon sandbox`` processes below ``pid`` (``pigeon run`` starts one): they
    stand for the provider, so the benchmark counts them apart from Pigeon's own."""
    found: list[int] = []
    for child in _children(pid):
        try:
            args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"pigeon" in args and b"sandbox" in args:
            found.append(child)
        else:
            found += sandbox_children(child)
    return found


def _children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return []
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return found


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy (not idle or I/O wait) since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in first]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / CLK_TCK


@dataclass
class Proc:
    """One started process and the file its output goes to."""

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
class ProcessGroup:
    """Named processes with their logs in ``root``; started, watched and stopped together."""

    root: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The environment every process gets (subclasses add their settings)."""
        return clean_environ()

    def spawn_command(
        self, name: str, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> Proc:
        """Start ``argv`` as the process called ``name`` (``extra_env`` on top of :meth:`env`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        # a process started again under the same name gets a log of its own
        # (readiness is read from some logs: an old "ready" line must not count)
        again = 2
        while log.exists():
            log = self.root / f"{name}.{again}.log"
            again += 1
        popen = start_process(argv, env=self.env() | (extra_env or {}), stdout=log)
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

    def rss_mb(self, measure: Callable[[int], int] = rss_bytes) -> dict[str, float]:
        """Resident memory now per process (with its children), in MB; a sandbox
        child (``pigeon run``'s) counts as ``sandbox``. ``measure=pss_bytes``: the
        proportional set size instead (pages shared between processes counted once)."""
        usage: dict[str, float] = {}
        for name, p in self.procs.items():
            sandboxes = (
                sum(tree_rss_bytes(child, measure) for child in sandbox_children(p.pid)) / 1e6
            )
            usage[name] = usage.get(name, 0.0) + tree_rss_bytes(p.pid, measure) / 1e6 - sandboxes
            if sandboxes:
                usage["sandbox"] = usage.get("sandbox", 0.0) + sandboxes
        return usage

    def cpu_per_process(self) -> dict[str, float]:
        """CPU seconds so far of every Pigeon process on its own, ``name[pid]``: a
        process's children (``pigeon run``'s worker child) apart from it, sandboxes left
        out (they stand for the provider)."""
        sandboxes = {child for p in self.procs.values() for child in sandbox_children(p.pid)}
        usage: dict[str, float] = {}
        for name, p in self.procs.items():
            todo = [p.pid]
            while todo:
                pid = todo.pop()
                if pid in sandboxes:
                    continue
                usage[f"{name}[{pid}]"] = cpu_seconds(pid)
                todo += _children(pid)
        return usage

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far per process, by this load generator, and by the machine.

        ``machine`` counts every process, so ``machine`` minus the others is the
        load that something else (another benchmark, a test run) put on the cores.
        """
        usage = {name: tree_cpu_seconds(p.pid) for name, p in self.procs.items()}
        for name, p in self.procs.items():  # a sandbox child counts as the sandbox
            for child in sandbox_children(p.pid):
                spent = tree_cpu_seconds(child)
                usage[name] -= spent
                usage[f"sandbox#{child}"] = spent
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


@dataclass
class LoopbackServices(ProcessGroup):
    """Processes on free loopback ports: something answering the API, and the sandbox provider."""

    api_port: int = field(default_factory=free_port)
    sandbox_port: int = field(default_factory=free_port)

    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        return f"http://{HOST}:{self.api_port}"

    @property
    def sandbox_url(self) -> str:
        """Base URL of the sandbox SMS provider."""
        return f"http://{HOST}:{self.sandbox_port}"

    def env(self) -> dict[str, str]:
        """The sandbox's address, the provider URL pointing at it, quiet logs."""
        env = super().env()
        env.update(
            PIGEON_SANDBOX_HOST=HOST,
            PIGEON_SANDBOX_PORT=str(self.sandbox_port),
            PIGEON_SMS_PROVIDER_URL=self.sandbox_url,
            PIGEON_LOG_LEVEL="WARNING",
        )
        return env


def cpu_percent(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """CPU use per process over a run, in % of one core; ``other`` is everything else.

    Keys ``NAME#ID`` (e.g. ``postgres#1234``, one per server process) are added up
    under ``NAME``; a process that ended during the run is left out.
    """
    used: dict[str, float] = {}
    for key, value in after.items():
        name = key.split("#", 1)[0]
        delta = value - before.get(key, 0.0)
        if name != key:  # a server process that started during the run counts from 0
            delta = max(0.0, delta)
        used[name] = used.get(name, 0.0) + delta
    used = {k: round(v / seconds * 100, 1) for k, v in used.items()}
    machine = used.pop("machine", 0.0)
    used["other"] = round(max(0.0, machine - sum(used.values())), 1)
    return used
