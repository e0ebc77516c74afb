"""``pigeon run``'s worker process, forked before anything starts so it shares memory.

Every Pigeon process imports the same ~90 MB of Python (FastAPI, SQLAlchemy,
pydantic, aiohttp); a child started as ``python -m pigeon`` loads a copy of its
own. ``pigeon run`` instead forks its worker process first thing, while it is
still one thread with no event loop and nothing open: the child begins as a
copy of the parent, and the imported code stays in pages the two share (Linux
copies a page only when one of them writes to it; the objects are first frozen
out of the cyclic garbage collector, whose bookkeeping would write to each).

The child then waits, blocked on a pipe, until the parent has opened the
store and the bus (and brought the schema up to date): only then does it
become ``pigeon <argv>``. If the parent fails to start, the pipe closes and the
child ends without having done anything. It ends with the parent, however the
parent ends (a parent-death signal). A worker process that dies later is
started again as a new interpreter (:class:`pigeon.children.WorkerProcesses`):
correct, only without the shared pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
import traceback

from pigeon.children import name_process, stop_with_parent

_GO = b"go"
#: what ``ps`` and ``/proc/PID/comm`` call the forked workers' process (a fork keeps
#: its parent's command line); another held child is ``pigeon-<its command>``
NAME = "pigeon-workers"


class ForkedChild:
    """A child this process forked: what :class:`asyncio.subprocess.Process` offers us."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    async def wait(self) -> int:
        """Wait for the child to end (its pidfd becomes readable) and reap it."""
        if self.returncode is not None:
            return self.returncode
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        fd = os.pidfd_open(self.pid)
        try:
            loop.add_reader(fd, _settle, ended)
            try:
                await ended
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)
        self.returncode = _reap(self.pid)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _reap(pid: int) -> int:
    """The exit code of ``pid``, which has ended (its pidfd said so): no waiting."""
    try:
        _, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped by someone else: its status is lost
        return -signal.SIGKILL
    return os.waitstatus_to_exitcode(status)


def _settle(ended: asyncio.Future[None]) -> None:
    if not ended.done():
        ended.set_result(None)


def freeze_heap() -> None:
    """Put every object alive now out of the cyclic garbage collector's sight.

    What a process has built by the time it serves (modules, the app, its routes
    and schemas: over 100,000 objects) lives as long as the process. Left in the
    collector's oldest generation, each full collection walks all of it again, and
    a busy API makes full collections often: a batch of 500 notifications leaves
    thousands of objects that outlive the youngest generations. Measured in one
    process, a batched notification cost the API's thread 12.5-14.6 µs, and 8.5 µs
    with the heap frozen (``gc.freeze``), as little as with the collector off.
    Called once a process has started, and before :class:`PreForked` forks (shared
    pages stay shared).
    """
    gc.collect()
    gc.freeze()


class PreForked:
    """A child forked now, held until :meth:`release` lets it run ``pigeon <argv>``."""

    def __init__(self, child: ForkedChild, go: int) -> None:
        self.child = child
        self._go: int | None = go

    @classmethod
    def fork(cls, argv: list[str], env: dict[str, str]) -> PreForked | None:
        """Fork the held child; ``None`` where forking is not safe (threads already run)."""
        if threading.active_count() > 1 or not hasattr(os, "pidfd_open"):
            return None
        parent_pid = os.getpid()
        wait_r, go_w = os.pipe()
        freeze_heap()  # the garbage collector's writes would unshare every page
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked child
            os.close(go_w)
            _held_child(wait_r, parent_pid, argv, env)
        os.close(wait_r)
        return cls(ForkedChild(pid), go_w)

    def release(self) -> ForkedChild:
        """Let the child start; the parent has opened what the child expects to find."""
        if self._go is not None:
            with contextlib.suppress(OSError):
                os.write(self._go, _GO)
            os.close(self._go)
            self._go = None
        return self.child

    def cancel(self) -> None:
        """The child is not needed after all: it ends without running (end of file on
        its pipe); reap it with ``await child.wait()``, or :meth:`cancel_and_reap`."""
        if self._go is not None:
            os.close(self._go)
            self._go = None

    def cancel_and_reap(self) -> None:
        """:meth:`cancel`, and wait the moment the child takes to end (not in a loop)."""
        if self._go is not None:
            self.cancel()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.child.pid, 0)


def _held_child(  # pragma: no cover - runs in the forked child
    wait_r: int, parent_pid: int, argv: list[str], env: dict[str, str]
) -> None:
    """Wait for the parent's word, then become ``pigeon <argv>``; never returns."""
    code = 1
    try:
        # nothing of the parent's but this pipe and the standard streams: another held
        # child's pipe kept open here would never reach end of file
        os.closerange(3, wait_r)
        os.closerange(wait_r + 1, 1 << 16)
        stop_with_parent(parent_pid)
        name_process(NAME if argv[0] == "worker" else f"pigeon-{argv[0]}")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # until it runs, the parent decides
        word = b""
        with contextlib.suppress(OSError):
            word = os.read(wait_r, len(_GO))
        os.close(wait_r)
        if word != _GO:
            code = 0
            return
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["pigeon", *argv]
        from pigeon.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what the interpreter would print before exiting
        traceback.print_exc()
        raise
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
