"""The dead-letter recorder: copies dead-letter topics into the store.

Runs beside the status projector (group ``dead-letter-recorder``). Operators
then list, inspect and replay dead letters with ``pigeon dlq`` or the admin
API on either bus, without reading topics. Recording is idempotent: a dead
letter's position in its topic is unique, so a redelivered batch adds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pigeon.bus.port import ACK, Message, Outcome
from pigeon.store.sql_store import SqlStore

log = logging.getLogger(__name__)

GROUP = "dead-letter-recorder"


class DeadLetterRecorder:
    """Batch handler: every message of a dead-letter topic becomes a ``dead_letters`` row."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def __call__(self, messages: Sequence[Message]) -> Sequence[Outcome]:
        """Record one batch in one transaction."""
        added = await self._store.record_dead_letters(messages)
        if added:
            log.warning("%d new dead letter(s); see 'pigeon dlq list'", added)
        return [ACK] * len(messages)
