"""The status projector and the usage meter: events into stored read models."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pigeon.bus.port import ACK, DeadLetter, Message, Outcome
from pigeon.domain.events import Event, SmsRequested, decode
from pigeon.errors import MalformedEvent
from pigeon.store.sql_store import SqlStore

log = logging.getLogger(__name__)

STATUS_GROUP = "status-projector"
USAGE_GROUP = "usage-meter"


def _decode_all(messages: Sequence[Message]) -> tuple[list[Outcome], list[Event]]:
    outcomes: list[Outcome] = [ACK] * len(messages)
    events: list[Event] = []
    for index, message in enumerate(messages):
        try:
            events.append(decode(message.value))
        except MalformedEvent as exc:
            log.error(
                "dead-lettering a malformed event: %s",
                exc,
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                },
            )
            outcomes[index] = DeadLetter(f"MalformedEvent: {exc}")
    return outcomes, events


class StatusProjector:
    """Applies status events (and requests, as ``queued``) to notifications."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def __call__(self, messages: Sequence[Message]) -> Sequence[Outcome]:
        """Project one batch in one transaction."""
        outcomes, events = _decode_all(messages)
        if events:
            await self._store.project_status(STATUS_GROUP, events)
        return outcomes


class UsageMeter:
    """Counts SMS messages and segments per account and day, exactly once."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def __call__(self, messages: Sequence[Message]) -> Sequence[Outcome]:
        """Meter one batch in one transaction."""
        outcomes, events = _decode_all(messages)
        requests = [e for e in events if isinstance(e, SmsRequested)]
        if requests:
            await self._store.meter_usage(USAGE_GROUP, requests)
        return outcomes
