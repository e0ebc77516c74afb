"""What a commit to a Pigeon SQLite file sets off, in one place.

This process's listeners hear it at once, other processes through the file's
:class:`~pigeon.bus.doorbell.Doorbell` (``<file>-wake/``), and the
:class:`~pigeon.bus.sqlite_checkpoint.Checkpointer` learns that the WAL grew.
The embedded bus uses one for the store's file (its consumers listen), the
store one for the API's intake file (the intake relay listens).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pigeon.bus.doorbell import Doorbell, Topics
from pigeon.bus.sqlite_checkpoint import Checkpointer


class CommitSignals:
    """Rings on a commit to ``path``; calls ``on_ring`` for this process's and others'."""

    def __init__(self, path: Path, synchronous: str, on_ring: Callable[[Topics], None]) -> None:
        self._on_ring = on_ring
        self._doorbell = Doorbell(path.with_name(path.name + "-wake"), on_ring)
        self._checkpointer = Checkpointer(path, synchronous)

    async def start(self) -> None:
        """Start checkpointing after this process's commits."""
        await self._checkpointer.start()

    async def stop(self) -> None:
        """Stop listening and checkpointing."""
        await self._doorbell.stop()
        await self._checkpointer.stop()

    async def listen(self) -> None:
        """Hear other processes' commits too (a process with listeners)."""
        if not self._doorbell.listening:
            await self._doorbell.start()

    def committed(self, topics: Topics = None) -> None:
        """This process committed (to ``topics`` of the log; None: not known): wake its
        listeners, ring the others, checkpoint later."""
        if topics is None or topics:
            self._on_ring(topics)
            self._doorbell.ring(topics)
        self._checkpointer.committed()
