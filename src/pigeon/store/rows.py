"""Conversions between table rows and domain objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row

from pigeon.bus.port import HEADER_EVENT_TYPE
from pigeon.domain.events import SmsRequested
from pigeon.domain.ids import EVENT_PREFIX, NOTIFICATION_PREFIX
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


#: ``SmsRequested``'s data fields -> the ``notifications`` columns that hold them
_REQUEST_DATA_COLUMNS = {
    "to": "recipient",
    "from_number": "from_number",
    "body": "body",
    "segments": "segments",
    "encoding": "encoding",
}
if tuple(_REQUEST_DATA_COLUMNS) != SmsRequested.data_fields():  # a field added to the event
    raise TypeError(f"request_event_sql writes {list(_REQUEST_DATA_COLUMNS)} as a request's data")


#: the headers of an untraced request event, as the event logs write them
REQUEST_HEADERS = orjson.dumps({HEADER_EVENT_TYPE: SmsRequested.type_name}).decode()


def request_event_sql(json_object: str, occurred_at: str) -> str:
    """SQL for the request event of the notification row in scope, built by the database.

    The JSON envelope that :func:`~pigeon.domain.events.encode` writes for
    ``Notification.requested_event()``, from the row's own columns (its event id
    is the notification's, see :func:`~pigeon.domain.ids.request_event_id`), so
    that an accept builds no event per notification in Python (a third of an
    accepted notification's cost in the API). ``json_object``: the database's
    function (SQLite ``json_object``, PostgreSQL ``json_build_object``);
    ``occurred_at``: SQL writing ``created_at`` as ``format_time`` does. The
    store tests hold both databases' events equal to Python's, for hard text.
    """
    data = ", ".join(f"'{field}', {column}" for field, column in _REQUEST_DATA_COLUMNS.items())
    return (
        f"{json_object}("
        f"'id', '{EVENT_PREFIX}' || substr(id, {len(NOTIFICATION_PREFIX) + 1}), "
        f"'type', '{SmsRequested.type_name}', 'version', {SmsRequested.version}, "
        f"'occurred_at', {occurred_at}, 'account_id', account_id, 'notification_id', id, "
        f"'data', {json_object}({data}))"
    )
