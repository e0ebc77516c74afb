"""Conversions between table rows and domain objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row

from pigeon.domain.notification import Notification
from pigeon.domain.status import NotificationStatus


def utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def notification_values(n: Notification) -> dict[str, Any]:
    """Column values of a new notification row."""
    return {
        "id": n.id,
        "account_id": n.account_id,
        "channel": n.channel,
        "recipient": n.to,
        "from_number": n.from_number,
        "body": n.body,
        "metadata": orjson.dumps(n.metadata).decode(),
        "segments": n.segments,
        "encoding": n.encoding,
        "status": n.status.value,
        "attempts": 0,
        "created_at": n.created_at,
        "updated_at": n.created_at,
    }


def notification_from_row(row: Row[Any]) -> Notification:
    """A :class:`Notification` from a ``notifications`` row."""
    return Notification(
        id=row.id,
        account_id=row.account_id,
        channel=row.channel,
        to=row.recipient,
        from_number=row.from_number,
        body=row.body,
        metadata=orjson.loads(row.metadata),
        segments=row.segments,
        encoding=row.encoding,
        status=NotificationStatus(row.status),
        created_at=utc(row.created_at),
    )
