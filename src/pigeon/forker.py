"""A fork server for ``pigeon run``'s workers: children that share the parent's memory.

Every Pigeon process imports the same ~90 MB of Python (FastAPI, SQLAlchemy,
pydantic, aiohttp); a child started with ``python -m pigeon`` loads its own copy.
``pigeon run`` instead forks a *forker* before anything else starts (no event
loop, no threads, no open database): a process that holds the imported modules
and does nothing but fork a child whenever the parent asks. Its children begin
as copies of it, so the imported code stays in pages they share with it and
with the parent (Linux copies a page only when a process writes to it; the
objects are frozen out of the cyclic garbage collector first, whose
bookkeeping would write to every one of them).

Protocol, over a ``SOCK_SEQPACKET`` pair (one message per datagram, JSON):

- parent → forker: ``{"argv": [...], "env": {...}}``: fork a child that runs
  ``pigeon <argv>`` with that environment; the forker answers ``{"pid": N}``,
  in the order asked;
- forker → parent: ``{"exited": N, "code": C}`` when child N ends (``C`` as
  :attr:`subprocess.Popen.returncode`: negative for a signal).

The forker ends when the parent does (a parent-death signal, or the socket's
end-of-file), after sending ``SIGTERM`` to its children and waiting for them;
its children end with it (their own parent-death signal). If the forker is
gone, :class:`pigeon.children.WorkerProcesses` starts children as new
interpreters again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

#: one message's most bytes (an environment is a few KiB)
MAX_MESSAGE = 1 << 20
#: how long the forker lets its children stop before it kills them
FORKER_STOP_GRACE_SECONDS = 12.0
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1


def _prctl(option: int, value: int | bytes) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def name_process(name: str) -> None:
    """Name this process in ``ps`` and ``/proc/PID/comm`` (15 bytes at most)."""
    _prctl(_PR_SET_NAME, name.encode()[:15])


def _returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


class ForkedChild:
    """A child the forker started: what :class:`asyncio.subprocess.Process` offers us."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = asyncio.Event()

    def ended(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    async def wait(self) -> int:
        await self._ended.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Forker:
    """The parent's handle on the forker process."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock = sock
        self._asked: deque[asyncio.Future[ForkedChild]] = deque()
        self._children: dict[int, ForkedChild] = {}
        self._reader: asyncio.Task[None] | None = None
        self._gone = False
        self._lock: asyncio.Lock | None = None

    @classmethod
    def start(cls) -> Forker | None:
        """Fork the forker now; ``None`` where forking is not safe (threads already run)."""
        if threading.active_count() > 1 or not hasattr(os, "fork"):
            return None
        parent_pid = os.getpid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        gc.collect()
        gc.freeze()  # the garbage collector's writes would unshare every page
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked process
            code = 1
            try:
                ours.close()
                _serve(theirs, parent_pid)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        return cls(pid, ours)

    @property
    def alive(self) -> bool:
        return not self._gone

    async def spawn(self, argv: list[str], env: dict[str, str]) -> ForkedChild:
        """Fork ``pigeon <argv>`` with ``env``; ``OSError`` if the forker is gone."""
        if self._gone:
            raise OSError("the forker has ended")
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self._sock.setblocking(False)
            self._reader = asyncio.ensure_future(self._read())
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # answers come in the order asked
            answer: asyncio.Future[ForkedChild] = loop.create_future()
            self._asked.append(answer)
            await loop.sock_sendall(self._sock, json.dumps({"argv": argv, "env": env}).encode())
            return await answer

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self._sock, MAX_MESSAGE)
                if not data:
                    break
                message: dict[str, Any] = json.loads(data)
                if "pid" in message:  # registered here: its exit may be the next message
                    child = ForkedChild(int(message["pid"]))
                    self._children[child.pid] = child
                    self._asked.popleft().set_result(child)
                elif "exited" in message:
                    ended = self._children.pop(int(message["exited"]), None)
                    if ended is not None:
                        ended.ended(int(message["code"]))
        except OSError:
            pass
        finally:
            await self._forker_gone()

    async def _forker_gone(self) -> None:
        """The forker ended: its children end too (their parent-death signal)."""
        self._gone = True
        for answer in self._asked:
            if not answer.done():
                answer.set_exception(OSError("the forker has ended"))
        self._asked.clear()
        waiting = [c for c in self._children.values() if c.returncode is None]
        deadline = time.monotonic() + FORKER_STOP_GRACE_SECONDS + 5
        while waiting and time.monotonic() < deadline:
            waiting = [c for c in waiting if _alive(c.pid)]
            if waiting:
                await asyncio.sleep(0.05)
        for child in self._children.values():
            if child.returncode is None:
                child.ended(-signal.SIGTERM)

    def close(self) -> None:
        """Stop the forker (it stops its children first) and forget it."""
        if self._reader is not None:
            self._reader.cancel()
        self._sock.close()
        self._gone = True
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGTERM)

    def reap(self) -> None:
        """Collect the forker's exit status once it has ended (no zombie left)."""
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, 0)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- the forker process ---------------------------------------------------------


def _serve(sock: socket.socket, parent_pid: int) -> None:  # pragma: no cover - forked
    """The forker's loop: fork on request, report exits, stop with the parent."""
    name_process("pigeon-forker")
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        return
    _ForkerLoop(sock).run()


class _ForkerLoop:  # pragma: no cover - runs in the forker
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stopping = False
        self.children: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # wakes the selector

    def _stop(self, _sig: int, _frame: object) -> None:
        self.stopping = True

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(json.dumps(message).encode())

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"exited": pid, "code": _returncode(status)})

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            selector.register(self.wake_r, selectors.EVENT_READ)
            while not self.stopping:
                for key, _ in selector.select():
                    if key.fileobj is self.sock:
                        self._fork_asked(selector)
                    else:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wake_r, 4096)
                self.reap()
        self._stop_children()

    def _fork_asked(self, selector: selectors.BaseSelector) -> None:
        data = self.sock.recv(MAX_MESSAGE)
        if not data:  # the parent has gone
            self.stopping = True
            return
        request = json.loads(data)
        pid = os.fork()
        if pid == 0:
            selector.close()
            _child(self.sock, self.wake_r, self.wake_w, request["argv"], request["env"])
        self.children.add(pid)
        self.send({"pid": pid})

    def _stop_children(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + FORKER_STOP_GRACE_SECONDS
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.reap()


def _child(  # pragma: no cover - forked
    sock: socket.socket, wake_r: int, wake_w: int, argv: list[str], env: dict[str, str]
) -> None:
    """In a child of the forker: become ``pigeon <argv>`` and never return."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for fd in (wake_r, wake_w):
            os.close(fd)
        sock.close()
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        name_process(f"pigeon-{argv[0]}")
        os.environ.clear()
        os.environ.update(env)
        os.environ["PIGEON_RUN_PARENT_PID"] = str(os.getppid())
        sys.argv = ["pigeon", *argv]
        from pigeon.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
