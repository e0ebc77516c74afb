"""Dead letters in the store: recorded from the dead-letter topics, listed, replayed.

The bus moves a message it gives up on to a dead-letter topic; the dead-letter
recorder copies each one here (once: its position in the dead-letter topic is
unique), so operators can list and replay them the same way on either bus.

A replay puts the notification back to ``queued`` with a timeline entry,
marks earlier failed attempts as superseded (a fresh retry budget, while the
attempt journal keeps its history) and publishes the original request event
again. The sender still refuses to send a notification that an attempt
already sent, and a dead letter is replayed at most once (the update that
marks it is conditional), so replaying twice never sends twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from pigeon.bus.port import HEADER_DEAD_REASON, HEADER_GROUP, HEADER_ORIGINAL_TOPIC, Message
from pigeon.domain.events import SmsRequested, decode, utcnow
from pigeon.domain.ids import ulid
from pigeon.domain.status import NotificationStatus
from pigeon.errors import ConflictError, MalformedEvent, NotFoundError
from pigeon.store.rows import utc
from pigeon.store.schema import dead_letters, notifications, send_attempts, timeline

#: outcomes of attempts a replay supersedes (their retry budget is spent)
_SPENT = ("transient", "permanent", "exhausted", "unknown")


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """One dead letter as operators see it."""

    id: str
    original_topic: str
    consumer_group: str
    event_type: str | None
    event_id: str | None
    account_id: str | None
    notification_id: str | None
    reason: str
    last_error: str | None
    dead_at: datetime
    replayed_at: datetime | None
    payload: bytes

    @property
    def replayable(self) -> bool:
        """Only a parseable SMS request can re-enter the pipeline."""
        return self.event_type == SmsRequested.type_name and self.replayed_at is None


def _describe(message: Message) -> dict[str, object]:
    headers: Mapping[str, str] = message.headers
    event_type = event_id = account_id = notification_id = None
    try:
        event = decode(message.value)
    except MalformedEvent:
        pass
    else:
        event_type, event_id = event.type_name, event.event_id
        account_id, notification_id = event.account_id, event.notification_id
    return {
        "id": "dlq_" + ulid(),
        "dead_topic": message.topic,
        "dead_partition": message.partition,
        "dead_offset": message.offset,
        "original_topic": headers.get(HEADER_ORIGINAL_TOPIC, ""),
        "consumer_group": headers.get(HEADER_GROUP, ""),
        "event_type": event_type,
        "event_id": event_id,
        "account_id": account_id,
        "notification_id": notification_id,
        "key": message.key,
        "value": message.value,
        "reason": headers.get(HEADER_DEAD_REASON, "") or "no reason given",
        "dead_at": utcnow(),
    }


def record(conn: Connection, messages: Sequence[Message]) -> int:
    """Copy dead-letter messages into the table; a message seen before is skipped."""
    rows = [_describe(m) for m in messages]
    ids = [r["notification_id"] for r in rows if r["notification_id"]]
    last_errors: dict[str, str | None] = {}
    if ids:
        # the projection's last error, overridden by the attempt journal: the
        # sender journals its last attempt in the same transaction as the dead
        # letter, while the projector may not have caught up yet
        last_errors = dict(
            conn.execute(
                select(notifications.c.id, notifications.c.last_error).where(
                    notifications.c.id.in_(ids)
                )
            ).all()
        )
        journaled = conn.execute(
            select(send_attempts.c.notification_id, send_attempts.c.error)
            .where(send_attempts.c.notification_id.in_(ids), send_attempts.c.error.is_not(None))
            .order_by(send_attempts.c.notification_id, send_attempts.c.attempt)
        ).all()
        last_errors.update((nid, error) for nid, error in journaled)
    for row in rows:
        row["last_error"] = last_errors.get(str(row["notification_id"]))
    upsert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    added = 0
    for row in rows:  # a batch of dead letters is small; psycopg reports no rowcount here
        result = conn.execute(
            upsert(dead_letters)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["dead_topic", "dead_partition", "dead_offset"])
            .returning(dead_letters.c.id)
        )
        added += len(result.all())
    return added


def _view(r: Row[Any]) -> DeadLetterView:
    return DeadLetterView(
        id=r.id,
        original_topic=r.original_topic,
        consumer_group=r.consumer_group,
        event_type=r.event_type,
        event_id=r.event_id,
        account_id=r.account_id,
        notification_id=r.notification_id,
        reason=r.reason,
        last_error=r.last_error,
        dead_at=utc(r.dead_at),
        replayed_at=utc(r.replayed_at) if r.replayed_at else None,
        payload=bytes(r.value),
    )


def listing(
    conn: Connection,
    *,
    since: datetime | None = None,
    include_replayed: bool = True,
    limit: int = 100,
) -> list[DeadLetterView]:
    """Dead letters, oldest first."""
    query = select(dead_letters).order_by(dead_letters.c.dead_at, dead_letters.c.id)
    if since is not None:
        query = query.where(dead_letters.c.dead_at >= since)
    if not include_replayed:
        query = query.where(dead_letters.c.replayed_at.is_(None))
    return [_view(r) for r in (conn.execute(query.limit(limit))).all()]


def get(conn: Connection, dead_letter_id: str) -> DeadLetterView | None:
    """One dead letter by id."""
    row = (conn.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id))).first()
    return _view(row) if row is not None else None


def replay(conn: Connection, dead_letter_id: str) -> SmsRequested:
    """Mark the dead letter replayed and re-queue its notification; returns the event to publish.

    Raises NotFoundError, or ConflictError when it was replayed already or is
    not an SMS request (nothing is changed then).
    """
    letter = get(conn, dead_letter_id)
    if letter is None:
        raise NotFoundError(f"no dead letter {dead_letter_id!r}")
    if letter.replayed_at is not None:
        raise ConflictError(
            f"dead letter {letter.id} was already replayed at {letter.replayed_at.isoformat()}"
        )
    if letter.event_type != SmsRequested.type_name:
        raise ConflictError(
            f"dead letter {letter.id} holds {letter.event_type or 'an unparseable event'}, "
            f"not an SMS request; it cannot be replayed ({letter.reason})"
        )
    event = decode(letter.payload)
    assert isinstance(event, SmsRequested)
    now = utcnow()
    marked = conn.execute(
        update(dead_letters)
        .where(and_(dead_letters.c.id == letter.id, dead_letters.c.replayed_at.is_(None)))
        .values(replayed_at=now)
    )
    if marked.rowcount != 1:  # a concurrent replay won
        raise ConflictError(f"dead letter {letter.id} was already replayed")
    conn.execute(
        update(send_attempts)
        .where(
            and_(
                send_attempts.c.notification_id == event.notification_id,
                send_attempts.c.outcome.in_(_SPENT),
            )
        )
        .values(outcome="superseded")
    )
    conn.execute(
        update(notifications)
        .where(
            and_(
                notifications.c.id == event.notification_id,
                notifications.c.status == NotificationStatus.FAILED.value,
            )
        )
        .values(status=NotificationStatus.QUEUED.value, updated_at=now)
    )
    conn.execute(
        timeline.insert().values(
            notification_id=event.notification_id,
            status=NotificationStatus.QUEUED.value,
            at=now,
            detail=f"replayed from dead letter {letter.id} (was: {letter.reason})",
        )
    )
    return event
