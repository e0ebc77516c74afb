"""``pigeon run``'s workers as child processes: one command, one Ctrl-C, more cores.

One Python process runs on one core at a time (the GIL). ``pigeon run`` keeps
the API in its own process and runs every worker together in one child
(``pigeon worker NAME…``, forked by :mod:`pigeon.prefork` so that it shares the
parent's loaded code) with the same settings, and the sandbox provider as
``python -m pigeon sandbox`` on the socket the parent bound, so that on a
machine with several cores the parts run in parallel, as they would on separate
machines (the sandbox stands for Twilio: it must not take the API's core).

One child for all the workers, not one each: measured (benchmarks/README.md),
the workers together use less than a core, and in one process their writes
share the store's group commit, and no worker waits on the database's write
lock for another worker's process to be given a core. Each child stops
with its parent, however the parent ends (a Linux parent-death signal covers
``kill -9``), and a child that dies on its own is started again after a
second: what it held is redelivered from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from typing import Protocol

from pigeon import metrics
from pigeon.config import Settings

log = logging.getLogger(__name__)

#: a child that stops by itself is started again after this long
RESTART_DELAY_SECONDS = 1.0
#: how long stopping children may take before they are killed
STOP_GRACE_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _prctl(option: int, value: int | bytes) -> None:
    """Linux ``prctl(2)``; elsewhere nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def name_process(name: str) -> None:
    """Name this process in ``ps`` and ``/proc/PID/comm`` (15 bytes at most); a forked
    child keeps its parent's command line, so this is how to tell it apart."""
    _prctl(_PR_SET_NAME, name.encode()[:15])


def lower_priority(increment: int) -> None:
    """Run this process ``increment`` nice levels below where it was (a worker: see
    ``PIGEON_WORKER_NICE``); needs no privilege.

    Linux with autogroups weighs each session as one: niceness only orders the
    processes of one session. A process that leads its own session (a service
    manager started it so, as the benchmark's separate processes are) sets its
    session's niceness too, so that it also yields to an API in another session.
    """
    if increment <= 0:
        return
    with contextlib.suppress(OSError):
        os.nice(increment)
    if os.getsid(0) == os.getpid():  # the session, and its autogroup, are this process's
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(increment))


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a child exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIGEON_")}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name == "data_dir":
            value = value.resolve()
        env[f"PIGEON_{name.upper()}"] = str(value)
    env["PIGEON_RUN_PARENT_PID"] = str(os.getpid())
    env["PIGEON_RUN_WORKER_PROCESSES"] = "false"
    env["PIGEON_AUTO_MIGRATE"] = "false"  # the parent brought the schema up to date
    if settings.metrics_dir:  # the parent's /metrics shows the children's metrics too
        env["PIGEON_METRICS_PORT"] = "0"
    return env


def stop_with_parent(parent_pid: int) -> None:
    """In a child of ``pigeon run``: end (SIGTERM) when the parent ends, even by ``kill -9``."""
    if not parent_pid:
        return
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent was gone before we asked
        os.kill(os.getpid(), signal.SIGTERM)


#: the sandbox provider's child, beside the workers'
SANDBOX = "sandbox"
#: the one child that runs every worker
WORKERS_CHILD = "workers"


class Child(Protocol):
    """A running child: an :class:`asyncio.subprocess.Process` or a forked one."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class WorkerProcesses:
    """Runs, watches and stops ``pigeon worker NAME`` children (a :class:`Runner`).

    ``sandbox_socket``: also run the sandbox provider as a child, serving on this
    listening socket (the parent bound it, so a busy port is found before anything
    starts, and a restarted sandbox keeps its port).

    ``forked``: the workers' process, already running (:mod:`pigeon.prefork`: it
    shares the parent's loaded code); without it, and when it is started again,
    a child is a new interpreter (``python -m pigeon``).
    """

    def __init__(
        self,
        names: list[str],
        settings: Settings,
        *,
        sandbox_socket: socket.socket | None = None,
        forked: Child | None = None,
    ) -> None:
        self._forked = forked
        self._commands: dict[str, list[str]] = {WORKERS_CHILD: ["worker", *names]} if names else {}
        self._pass_fds: tuple[int, ...] = ()
        if sandbox_socket is not None:
            fd = sandbox_socket.fileno()
            self._commands[SANDBOX] = ["sandbox", "--listen-fd", str(fd)]
            self._pass_fds = (fd,)
        self._env = child_environment(settings)
        self._children: dict[str, Child] = {}
        self._stopping = asyncio.Event()

    async def _spawn(self, name: str) -> Child:
        process: Child
        if name == WORKERS_CHILD and self._forked is not None:
            process, self._forked = self._forked, None
            self._children[name] = process
            return process
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pigeon",
            *self._commands[name],
            env=self._env,
            pass_fds=self._pass_fds if name == SANDBOX else (),
        )
        self._children[name] = process
        return process

    async def run(self) -> None:
        """Start every worker; restart one that dies; on stop, stop them all."""
        try:
            await asyncio.gather(*(self._keep(name) for name in self._commands))
        finally:
            await self._stop_children()

    async def _keep(self, name: str) -> None:
        while not self._stopping.is_set():
            process = await self._spawn(name)
            code = await process.wait()
            metrics.forget_process(process.pid)  # its live gauges go; its counters still count
            if self._stopping.is_set():
                return
            log.warning("%s ended (exit %s); starting it again", name, code)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), RESTART_DELAY_SECONDS)

    def request_stop(self) -> None:
        """Ask every child to finish what it holds and stop (SIGTERM)."""
        self._stopping.set()
        for process in self._children.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    async def _stop_children(self) -> None:
        self.request_stop()
        waiting = [p for p in self._children.values() if p.returncode is None]
        if not waiting:
            return
        _, late = await asyncio.wait(
            [asyncio.ensure_future(p.wait()) for p in waiting], timeout=STOP_GRACE_SECONDS
        )
        for process in waiting:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task
