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
from typing import Any

from sqlalchemy import Column, Table, delete, exists, select, text, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

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


def _not_dead_lettered(
    conn: Connection, column: ColumnElement[str], dead: Column[str], *only: ColumnElement[bool]
) -> ColumnElement[bool]:
    """``column`` is not in ``dead`` of a dead letter (matching ``only``).

    NOT EXISTS on PostgreSQL: an anti-join, fast however many dead letters there
    are (NOT IN falls back to a scan per row once they outgrow work_mem). NOT IN
    on SQLite: the list is built once per statement (a correlated NOT EXISTS
    would scan ``dead_letters`` per row: it has no index on these columns).
    """
    if conn.dialect.name == "postgresql":
        return ~exists().where(dead == column, *only)
    return column.not_in(select(dead).where(dead.is_not(None), *only))


def purge_processed_events(conn: Connection, before: datetime, limit: int) -> int:
    """Forget up to ``limit`` processed events created before ``before``."""
    floor = EVENT_PREFIX + ulid_floor(before)
    deleted = 0
    for consumer in list(conn.execute(_CONSUMERS).scalars()):
        if deleted >= limit:
            break
        ids = conn.execute(
            select(processed_events.c.event_id)
            .where(
                processed_events.c.consumer == consumer,
                # ids we did not make (no prefix) are never taken for old ones
                processed_events.c.event_id >= EVENT_PREFIX,
                processed_events.c.event_id < floor,
                _not_dead_lettered(conn, processed_events.c.event_id, dead_letters.c.event_id),
            )
            .order_by(processed_events.c.event_id)
            .limit(limit - deleted)
            .with_for_update(skip_locked=True)
        ).scalars()
        deleted += _delete(
            conn,
            processed_events,
            processed_events.c.event_id,
            list(ids),
            processed_events.c.consumer == consumer,
        )
    return deleted


def purge_pending_callbacks(conn: Connection, before: datetime, limit: int) -> int:
    """Drop up to ``limit`` kept callbacks received before ``before`` that nothing claimed."""
    ids = conn.execute(
        select(pending_callbacks.c.id)
        .where(pending_callbacks.c.received_at < before)
        .order_by(pending_callbacks.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).scalars()
    return _delete(conn, pending_callbacks, pending_callbacks.c.id, list(ids))


def purge_idempotency_keys(conn: Connection, before: datetime, limit: int) -> int:
    """Drop up to ``limit`` idempotency keys claimed before ``before`` (past their TTL)."""
    keys = conn.execute(
        select(idempotency_keys.c.account_id, idempotency_keys.c.key)
        .where(idempotency_keys.c.created_at < before)
        .order_by(idempotency_keys.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    key = tuple_(idempotency_keys.c.account_id, idempotency_keys.c.key)
    return _delete(conn, idempotency_keys, key, [tuple(k) for k in keys])


def _delete(
    conn: Connection,
    table: Table,
    key: ColumnElement[Any],
    keys: list[Any],
    *also: ColumnElement[bool],
) -> int:
    """Delete the rows picked by key (and locked, on PostgreSQL); returns how many.

    Picked first, deleted by key second: ``DELETE … WHERE key IN (SELECT … LIMIT n)``
    in one statement lets PostgreSQL's planner scan the whole table to join the
    handful of picked keys (measured: a sequential scan of every consumer's row).
    """
    if keys:
        conn.execute(delete(table).where(key.in_(keys), *also))
    return len(keys)


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
                _not_dead_lettered(
                    conn,
                    notifications.c.id,
                    dead_letters.c.notification_id,
                    dead_letters.c.replayed_at.is_(None),
                ),
            )
            .order_by(notifications.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    _delete(conn, timeline, timeline.c.notification_id, ids)
    _delete(conn, send_attempts, send_attempts.c.notification_id, ids)
    return _delete(conn, notifications, notifications.c.id, ids)
