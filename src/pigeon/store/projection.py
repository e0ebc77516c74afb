"""Applying events to stored state: status projection and usage metering.

Both are idempotent under at-least-once delivery: an event id is recorded in
``processed_events`` in the same transaction as its effect, so a redelivered
event finds its id and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.events import (
    Event,
    SmsAttemptFailed,
    SmsFailed,
    SmsRequested,
    SmsSending,
    SmsSent,
    SmsUndelivered,
)
from pigeon.domain.status import NotificationStatus, can_advance
from pigeon.store.schema import notifications, processed_events, timeline, usage_daily


async def first_time(conn: AsyncConnection, consumer: str, event_id: str) -> bool:
    """Record ``event_id`` for ``consumer``; False if it was recorded before."""
    result = await conn.execute(
        sqlite_insert(processed_events)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing()
    )
    return bool(result.rowcount)


async def project_status(conn: AsyncConnection, consumer: str, events: Sequence[Event]) -> int:
    """Apply status events forward-only; returns how many changed something."""
    applied = 0
    for event in events:
        if not await first_time(conn, consumer, event.event_id):
            continue
        row = (
            await conn.execute(
                select(notifications.c.status, notifications.c.attempts).where(
                    notifications.c.id == event.notification_id
                )
            )
        ).first()
        if row is None:
            continue  # a status for a notification this store never saw
        current = NotificationStatus(row.status)
        values: dict[str, object] = {}
        if isinstance(event, SmsSending | SmsSent | SmsAttemptFailed):
            values["attempts"] = max(row.attempts, event.attempt)
            values["provider"] = event.provider
        if isinstance(event, SmsSent):
            values["provider_message_id"] = event.provider_message_id
        if isinstance(event, SmsAttemptFailed):
            values["last_error"] = event.error
        if isinstance(event, SmsFailed | SmsUndelivered):
            values["last_error"] = event.detail()
        moves = event.status is not None and can_advance(current, event.status)
        if moves and event.status is not None:
            values["status"] = event.status.value
        if moves or event.status is None:
            await conn.execute(
                insert(timeline).values(
                    notification_id=event.notification_id,
                    status=(event.status or current).value,
                    at=event.occurred_at,
                    detail=event.detail(),
                )
            )
        if values:
            values["updated_at"] = event.occurred_at
            await conn.execute(
                update(notifications)
                .where(notifications.c.id == event.notification_id)
                .values(**values)
            )
            applied += 1
    return applied


async def meter_usage(conn: AsyncConnection, consumer: str, events: Sequence[SmsRequested]) -> int:
    """Count messages and segments per account and UTC day, once per event."""
    counted = 0
    for event in events:
        if not await first_time(conn, consumer, event.event_id):
            continue
        stmt = sqlite_insert(usage_daily).values(
            account_id=event.account_id,
            day=event.occurred_at.date(),
            messages=1,
            segments=event.segments,
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[usage_daily.c.account_id, usage_daily.c.day],
                set_={
                    "messages": usage_daily.c.messages + 1,
                    "segments": usage_daily.c.segments + stmt.excluded.segments,
                },
            )
        )
        counted += 1
    return counted
