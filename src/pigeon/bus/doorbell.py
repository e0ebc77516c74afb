"""Cross-process wake-ups for the embedded bus: a doorbell instead of a poll loop.

Every process with consumers on one SQLite file registers in a folder beside
it (``<database>-wake/``) and listens on a Unix datagram socket. A process
that commits (consumers or not: the API only publishes) rings every
registered peer: one tiny datagram each, coalesced to at most one ring per
event-loop turn. A ring only says "look again"; what is new is always read
from the log, so a lost or extra ring costs nothing but a poll (and consumers
still poll on a slow fallback timer, see ``PIGEON_BUS_POLL_INTERVAL_MS``).

A ring names the topics the commit wrote to (``sms.requested,…``; ``!`` when
not known), so that a process wakes only the consumers of those topics: with
one ring for every commit of every process, each commit woke every consumer
of every process, and their polls (a thread hop and a query each) were most
of a worker's CPU at a low rate.

The sockets live in Linux's abstract namespace (no path-length limit, nothing
left on disk by ``kill -9``); the folder holds one empty file per listener,
named after its address. A ring refused by a dead listener removes its file.
Where abstract sockets do not exist, the doorbell stays silent and the
fallback poll does the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: how long a listing of the peers is trusted before the folder is read again
PEERS_TTL_SECONDS = 1.0
_PREFIX = "pigeon-bus-"
#: the ring of unknown topics (every consumer looks)
_ALL = b"!"
#: a longer list of topics rings all (a datagram stays small)
_MAX_RING_BYTES = 512
#: topics named by a ring; None: not known, every consumer looks
Topics = frozenset[str] | None


class Doorbell:
    """Rings the other processes on one SQLite file; calls ``on_ring`` when rung."""

    def __init__(self, folder: Path, on_ring: Callable[[Topics], None]) -> None:
        self._folder = folder
        self._on_ring = on_ring
        self._name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._sock: socket.socket | None = None
        self._ringer: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = False
        #: topics to ring on this turn (None: all)
        self._to_ring: set[str] | None = set()
        self._peers: list[str] = []
        self._peers_read_at = -PEERS_TTL_SECONDS

    @property
    def listening(self) -> bool:
        """Whether rings from other processes reach this one."""
        return self._sock is not None

    async def start(self) -> None:
        """Listen and register in the folder (silently not, where unsupported)."""
        self._loop = asyncio.get_running_loop()
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(_address(self._name))
            (self._folder / self._name).touch()
        except OSError as exc:
            log.debug("bus doorbell unavailable (%s); consumers poll instead", exc)
            return
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)

    async def stop(self) -> None:
        """Stop listening and unregister."""
        ringer, self._ringer = self._ringer, None
        if ringer is not None:
            ringer.close()
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()
        with contextlib.suppress(OSError):
            (self._folder / self._name).unlink()

    def ring(self, topics: Topics = None) -> None:
        """Wake the consumers of ``topics`` (None: of every topic) in every process
        listening on this file, once per event-loop turn at most.

        A process that only publishes (the API) rings without listening.
        """
        if topics is None:
            self._to_ring = None
        elif self._to_ring is not None:
            self._to_ring.update(topics)
        if self._pending:
            return
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return
        self._pending = True
        self._loop.call_soon(self._send)

    def _send(self) -> None:
        self._pending = False
        topics, self._to_ring = self._to_ring, set()
        if topics is not None and not topics:
            return  # nothing was written to the log
        payload = _ALL if topics is None else ",".join(sorted(topics)).encode()
        if len(payload) > _MAX_RING_BYTES:
            payload = _ALL
        sock = self._sock or self._sender()
        if sock is None:
            return
        for peer in self._current_peers():
            try:
                sock.sendto(payload, _address(peer))
            except BlockingIOError:
                pass  # its queue is full of rings: it will look anyway
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):  # nobody listens: stale
                    with contextlib.suppress(OSError):
                        (self._folder / peer).unlink()
                    self._peers_read_at = -PEERS_TTL_SECONDS

    def _sender(self) -> socket.socket | None:
        """An unbound socket to ring from, for a process that does not listen."""
        if self._ringer is None:
            try:
                self._ringer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._ringer.setblocking(False)
            except OSError:
                return None
        return self._ringer

    def _current_peers(self) -> list[str]:
        now = time.monotonic()
        if now - self._peers_read_at >= PEERS_TTL_SECONDS:
            try:
                self._peers = [n for n in os.listdir(self._folder) if n != self._name]
            except OSError:
                self._peers = []
            self._peers_read_at = now
        return self._peers

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        topics: set[str] | None = set()
        with contextlib.suppress(OSError):
            while True:  # drain: many rings are one wake-up
                ring = sock.recv(_MAX_RING_BYTES)
                if ring == _ALL or not ring:
                    topics = None
                elif topics is not None:
                    topics.update(ring.decode("utf-8", "replace").split(","))
        if topics is None or topics:
            self._on_ring(None if topics is None else frozenset(topics))


def _address(name: str) -> str:
    return "\0" + _PREFIX + name
