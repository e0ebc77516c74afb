"""Retention in the store: each function deletes one bounded chunk of old rows.

Same statements on SQLite and PostgreSQL. Each runs inside one transaction of
the group committer, and deletes at most ``limit`` rows of its table, so the
write lock (SQLite) or the row locks (PostgreSQL) are held only briefly. On
PostgreSQL the rows to delete are picked ``FOR UPDATE SKIP LOCKED``: several
workers purging at once, or a projector holding a notification, neither wait
for each other nor deadlock; each deletes what the others did not.

What is kept, and why:

- ``processed_events`` rows are the exactly-once memory of the projector and
  the meter. A row is needed while its event can be delivered again: while the
  event is in the log (the embedded log's compaction, Kafka's ``retention.ms``).
  Event ids are ULIDs, so "the event is older than X" is an index range on the
  primary key. The events of dead letters are kept as long as the dead letter:
  a replay publishes the original event, with its original id, again.
- ``notifications`` (with their ``timeline`` and ``send_attempts``) only in a
  final status, and not while an unreplayed dead letter may bring them back.
  Notification ids are ULIDs too: a notification last changed before X was
  created before X, so the scan is an index range on the primary key.
- ``usage_daily`` and ``dead_letters`` are never purged here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.engine import Connection

from pigeon.domain.ids import EVENT_PREFIX, NOTIFICATION_PREFIX, ulid_floor
from pigeon.domain.status import NotificationStatus
from pigeon.store.schema import (
    dead_letters,
    idempotency_keys,
    notifications,
    pending_callbacks,
    processed_events,
    send_attempts,
    timeline,
)

FINAL_STATUSES = tuple(sorted(s.value for s in NotificationStatus if s.is_final))

# The consumers in processed_events, one index probe each (a loose index scan:
# neither database skips through a primary key's leading column by itself).
_CONSUMERS = text(
    "WITH RECURSIVE c(consumer) AS ("
    " SELECT min(consumer) FROM processed_events"
    " UNION ALL"
    " SELECT (SELECT min(p.consumer) FROM processed_events p WHERE p.consumer > c.consumer)"
    " FROM c WHERE c.consumer IS NOT NULL"
    ") SELECT consumer FROM c WHERE consumer IS NOT NULL"
)
_DEAD_EVENTS = select(dead_letters.c.event_id).where(dead_letters.c.event_id.is_not(None))
_UNREPLAYED = select(dead_letters.c.notification_id).where(
    dead_letters.c.notification_id.is_not(None), dead_letters.c.replayed_at.is_(None)
)


def purge_processed_events(conn: Connection, before: datetime, limit: int) -> int:
    """Forget up to ``limit`` processed events created before ``before``."""
    floor = EVENT_PREFIX + ulid_floor(before)
    deleted = 0
    for consumer in list(conn.execute(_CONSUMERS).scalars()):
        if deleted >= limit:
            break
        doomed = (
            select(processed_events.c.event_id)
            .where(
                processed_events.c.consumer == consumer,
                # ids we did not make (no prefix) are never taken for old ones
                processed_events.c.event_id >= EVENT_PREFIX,
                processed_events.c.event_id < floor,
                processed_events.c.event_id.not_in(_DEAD_EVENTS),
            )
            .order_by(processed_events.c.event_id)
            .limit(limit - deleted)
            .with_for_update(skip_locked=True)
        )
        deleted += conn.execute(
            delete(processed_events).where(
                processed_events.c.consumer == consumer,
                processed_events.c.event_id.in_(doomed.scalar_subquery()),
            )
        ).rowcount
    return deleted


def purge_pending_callbacks(conn: Connection, before: datetime, limit: int) -> int:
    """Drop up to ``limit`` kept callbacks received before ``before`` that nothing claimed."""
    doomed = (
        select(pending_callbacks.c.id)
        .where(pending_callbacks.c.received_at < before)
        .order_by(pending_callbacks.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return conn.execute(
        delete(pending_callbacks).where(pending_callbacks.c.id.in_(doomed.scalar_subquery()))
    ).rowcount


def purge_idempotency_keys(conn: Connection, before: datetime, limit: int) -> int:
    """Drop up to ``limit`` idempotency keys claimed before ``before`` (past their TTL)."""
    key = tuple_(idempotency_keys.c.account_id, idempotency_keys.c.key)
    doomed = (
        select(idempotency_keys.c.account_id, idempotency_keys.c.key)
        .where(idempotency_keys.c.created_at < before)
        .order_by(idempotency_keys.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return conn.execute(delete(idempotency_keys).where(key.in_(doomed))).rowcount


def purge_notifications(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` final notifications last changed before ``before``, with
    their timeline and attempts; returns how many notifications."""
    ids = list(
        conn.execute(
            select(notifications.c.id)
            .where(
                notifications.c.id >= NOTIFICATION_PREFIX,
                notifications.c.id < NOTIFICATION_PREFIX + ulid_floor(before),
                notifications.c.status.in_(FINAL_STATUSES),
                notifications.c.updated_at < before,
                notifications.c.id.not_in(_UNREPLAYED),
            )
            .order_by(notifications.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if not ids:
        return 0
    conn.execute(delete(timeline).where(timeline.c.notification_id.in_(ids)))
    conn.execute(delete(send_attempts).where(send_attempts.c.notification_id.in_(ids)))
    conn.execute(delete(notifications).where(notifications.c.id.in_(ids)))
    return len(ids)
