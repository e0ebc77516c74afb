"""Applying events to stored state: status projection and usage metering.

Both are idempotent under at-least-once delivery: an event id is recorded in
``processed_events`` in the same transaction as its effect, so a redelivered
event finds its id and changes nothing. Each function handles a whole batch
with a handful of set-based statements, not a few statements per event.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import BindParameter

from pigeon.domain.events import (
    Event,
    SmsAttemptFailed,
    SmsDelivered,
    SmsFailed,
    SmsRequested,
    SmsSending,
    SmsSent,
    SmsUndelivered,
    SmsWaiting,
)
from pigeon.domain.status import NotificationStatus, can_advance
from pigeon.store import pg_statements
from pigeon.store.schema import notifications, processed_events, timeline, usage_daily

E = TypeVar("E", bound=Event)

# built once: a statement made per call costs more than running it, inside the write lock
_IDS: BindParameter[str] = bindparam("ids", expanding=True)
_SEEN = select(processed_events.c.event_id).where(
    processed_events.c.consumer == bindparam("consumer"), processed_events.c.event_id.in_(_IDS)
)
_INSERT_PROCESSED = insert(processed_events)
# FOR UPDATE (PostgreSQL; SQLite's writers never overlap): two projector processes
# may fold events of one notification at once (its request and its status events
# travel on different topics); unlocked, the later commit would write back a
# status read before the other's commit and move the notification backwards
_LOCKED = (
    select(
        notifications.c.id,
        notifications.c.status,
        notifications.c.attempts,
        notifications.c.provider,
        notifications.c.provider_message_id,
        notifications.c.last_error,
        notifications.c.next_attempt_at,
    )
    .where(notifications.c.id.in_(_IDS))
    .order_by(notifications.c.id)
    .with_for_update()
)
_STEPS = select(timeline.c.notification_id, timeline.c.status, timeline.c.detail).where(
    timeline.c.notification_id.in_(_IDS)
)
_UPDATE_NOTIFICATION = update(notifications).where(notifications.c.id == bindparam("nid"))
_FINAL_VALUES = frozenset(s.value for s in NotificationStatus if s.is_final)

#: one INFO line per notification when it reaches its final state
final_log = logging.getLogger("pigeon.notifications")


@dataclass(frozen=True, slots=True)
class FinalState:
    """A notification that reached its final state in a transaction."""

    notification_id: str
    account_id: str
    status: str
    attempts: int
    provider: str | None

    @staticmethod
    def log_all(finals: Sequence[FinalState]) -> None:
        """One INFO line each; call it after their transaction committed."""
        if not finals or not final_log.isEnabledFor(logging.INFO):
            return
        for final in finals:
            final_log.info(
                "notification %s",
                final.status,
                extra={
                    "notification_id": final.notification_id,
                    "account_id": final.account_id,
                    "status": final.status,
                    "attempts": final.attempts,
                    "provider": final.provider,
                },
            )


def first_time(conn: Connection, consumer: str, events: Sequence[E]) -> list[E]:
    """The events ``consumer`` has not processed before, now recorded as processed."""
    unique = list({e.event_id: e for e in events}.values())
    if not unique:
        return []
    if conn.dialect.name == "postgresql":
        # one statement (see FIRST_TIME)
        recorded = pg_statements.execute(
            conn,
            pg_statements.FIRST_TIME,
            {"consumer": consumer, "ids": [e.event_id for e in unique]},
        )
        new = {event_id for (event_id,) in recorded}
        return [e for e in unique if e.event_id in new]
    seen = set(
        conn.execute(_SEEN, {"consumer": consumer, "ids": [e.event_id for e in unique]}).scalars()
    )
    fresh = [e for e in unique if e.event_id not in seen]
    if fresh:
        conn.execute(
            _INSERT_PROCESSED,
            [{"consumer": consumer, "event_id": e.event_id} for e in fresh],
        )
    return fresh


@functools.cache
def _usage_upsert(dialect: str) -> Executable:
    """Add to a day's usage, creating the row: built once per dialect, run with many rows."""
    stmt = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(usage_daily)
    return stmt.on_conflict_do_update(
        index_elements=[usage_daily.c.account_id, usage_daily.c.day],
        set_={
            "messages": usage_daily.c.messages + stmt.excluded.messages,
            "segments": usage_daily.c.segments + stmt.excluded.segments,
        },
    )


def _changes(event: Event, row: dict[str, Any]) -> None:
    """Fold ``event`` into ``row`` (a notification's columns), status forward-only.

    ``last_error`` says why the latest attempt failed: a later attempt that
    succeeds (or a delivery) clears it, and an older attempt's failure that
    arrives late does not bring it back.
    """
    latest = True
    if isinstance(event, SmsSending | SmsSent | SmsAttemptFailed):
        latest = event.attempt >= row["attempts"]
        row["attempts"] = max(row["attempts"], event.attempt)
        if latest:
            row["provider"] = event.provider
            row["next_attempt_at"] = None  # an attempt under way, or its outcome
    if isinstance(event, SmsAttemptFailed) and latest:
        row["next_attempt_at"] = event.occurred_at + timedelta(seconds=event.retry_in_seconds)
    if isinstance(event, SmsWaiting):
        row["next_attempt_at"] = event.next_try_at
    if isinstance(event, SmsSent):
        row["provider_message_id"] = event.provider_message_id
        if latest:
            row["last_error"] = None
    if isinstance(event, SmsAttemptFailed) and latest:
        row["last_error"] = event.error
    if isinstance(event, SmsFailed | SmsUndelivered):
        row["last_error"] = event.detail()
    current = NotificationStatus(row["status"])
    if event.status is not None and can_advance(current, event.status):
        row["status"] = event.status.value
        if isinstance(event, SmsDelivered):
            row["last_error"] = None  # a failed notification a late report contradicts keeps it
    if NotificationStatus(row["status"]).is_final:
        row["next_attempt_at"] = None


def project_status(
    conn: Connection,
    consumer: str,
    events: Sequence[Event],
    finals: list[FinalState] | None = None,
) -> int:
    """Apply status events forward-only; returns how many notifications changed.

    ``finals``: gets the notifications these events brought to a final state
    (each notification once ever: final states are never left, events are applied once).
    """
    fresh = first_time(conn, consumer, events)
    ids = list({e.notification_id for e in fresh})
    if not ids:
        return 0
    rows = {r.id: dict(r._mapping) for r in (conn.execute(_LOCKED, {"ids": ids}))}
    before = {nid: dict(row) for nid, row in rows.items()}
    recorded: dict[str, set[tuple[str, str]]] = {}
    for nid, status, detail in (conn.execute(_STEPS, {"ids": ids})).all():
        recorded.setdefault(nid, set()).add((status, detail))
    entries = []
    finished: dict[str, str] = {}  # notification -> account, for those final from now on
    for event in sorted(fresh, key=lambda e: e.occurred_at):
        row = rows.get(event.notification_id)
        if row is None:
            continue  # a status for a notification this store never saw
        was = row["status"]
        _changes(event, row)
        if row["status"] != was and row["status"] in _FINAL_VALUES:
            finished[event.notification_id] = event.account_id
        # The timeline is history: a step that arrives late (the projector reads
        # two topics) still gets its entry, placed by its time. Each step appears
        # once - every attempt is its own step ("attempt 2 via …"), but a
        # callback repeating "sent" or "delivered" adds nothing.
        seen = recorded.setdefault(event.notification_id, set())
        status = event.status.value if event.status is not None else row["status"]
        step = (status, event.detail())
        if event.status is None or step not in seen:
            seen.add(step)
            entries.append(
                {
                    "notification_id": event.notification_id,
                    "status": status,
                    "at": event.occurred_at,
                    "detail": event.detail(),
                }
            )
        row["updated_at"] = event.occurred_at
    # sorted: concurrent projectors on PostgreSQL lock rows in one order, never deadlock
    changed = [row for nid, row in sorted(rows.items()) if _differs(row, before[nid])]
    if finals is not None:
        finals.extend(
            FinalState(nid, aid, rows[nid]["status"], rows[nid]["attempts"], rows[nid]["provider"])
            for nid, aid in finished.items()
        )
    pg_statements.insert_many(conn, timeline, entries)
    if conn.dialect.name == "postgresql":
        pg_statements.update_rows(conn, notifications, ("id",), changed)
        return len(changed)
    if changed:
        conn.execute(
            _UPDATE_NOTIFICATION,
            [{**{k: v for k, v in row.items() if k != "id"}, "nid": row["id"]} for row in changed],
        )
    return len(changed)


def _differs(row: dict[str, Any], before: dict[str, Any]) -> bool:
    return any(row.get(k) != before.get(k) for k in row if k != "updated_at")


def meter_usage(conn: Connection, consumer: str, events: Sequence[SmsRequested]) -> int:
    """Count messages and segments per account and UTC day, once per event."""
    return len(meter_fresh(conn, consumer, events))


def meter_fresh(
    conn: Connection, consumer: str, events: Sequence[SmsRequested]
) -> list[SmsRequested]:
    """Like :func:`meter_usage`; returns the events counted now (the others were before)."""
    fresh = first_time(conn, consumer, events)
    totals: dict[tuple[str, date], list[int]] = {}
    for event in fresh:
        day_total = totals.setdefault((event.account_id, event.occurred_at.date()), [0, 0])
        day_total[0] += 1
        day_total[1] += event.segments
    rows = [
        {"account_id": a, "day": d, "messages": m, "segments": n}
        for (a, d), (m, n) in sorted(totals.items())
    ]
    if rows:
        # one row (one account's day: the usual case) as a plain execute, not a pipeline
        conn.execute(_usage_upsert(conn.dialect.name), rows[0] if len(rows) == 1 else rows)
    return fresh
