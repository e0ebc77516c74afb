"""Listing an account's notifications: filters, newest first, keyset pagination.

A page is ordered by ``(created_at, id)`` descending and the cursor names the
last row of the previous page, so a page never repeats or skips a row while
new notifications arrive (they are newer than any cursor). The account's
``(account_id, created_at)`` index serves every page on both dialects.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, Table, and_, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from pigeon.domain.status import NotificationStatus
from pigeon.errors import ValidationError

#: the most rows one page holds
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the previous page ended: its last row's creation time and id."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        """Opaque to clients: base64url of the two values."""
        raw = orjson.dumps([self.created_at.isoformat(), self.id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """The cursor :meth:`encode` gave; :class:`ValidationError` for anything else."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            at, nid = orjson.loads(raw)
            moment = datetime.fromisoformat(at)
        except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError):
            raise ValidationError("cursor", "is not a cursor this API gave out") from None
        if not isinstance(nid, str) or moment.tzinfo is None:
            raise ValidationError("cursor", "is not a cursor this API gave out")
        return cls(moment, nid)


@dataclass(frozen=True)
class NotificationFilter:
    """Which notifications of an account a listing shows (all given filters hold)."""

    status: NotificationStatus | None = None
    #: the recipient, E.164
    to: str | None = None
    #: created at or after
    since: datetime | None = None
    #: created before
    until: datetime | None = None
    #: metadata keys whose value is exactly this string
    metadata: Mapping[str, str] = field(default_factory=dict)


def _metadata_is(table: Table, key: str, value: str, dialect: str) -> ColumnElement[bool]:
    """The row's metadata has ``key`` with the string ``value`` (not a number, not null)."""
    if dialect == "postgresql":
        doc = cast(table.c.metadata, JSONB)
        return and_(
            func.jsonb_typeof(doc.op("->")(literal(key))) == "string",
            doc.op("->>")(literal(key)) == value,
        )
    path = '$."' + key + '"'  # keys with '"' or '\\' are refused before this
    return and_(
        func.json_type(table.c.metadata, path) == "text",
        func.json_extract(table.c.metadata, path) == value,
    )


def page_query(
    table: Table,
    account_id: str,
    filt: NotificationFilter,
    *,
    after: Cursor | None,
    limit: int,
    dialect: str,
) -> Select[Any]:
    """One page of ``table`` (the store's notifications or the intake's) for the filter."""
    where: list[ColumnElement[bool]] = [table.c.account_id == account_id]
    if filt.status is not None:
        where.append(table.c.status == filt.status.value)
    if filt.to is not None:
        where.append(table.c.recipient == filt.to)
    if filt.since is not None:
        where.append(table.c.created_at >= filt.since)
    if filt.until is not None:
        where.append(table.c.created_at < filt.until)
    for key, value in filt.metadata.items():
        where.append(_metadata_is(table, key, value, dialect))
    if after is not None:
        where.append(
            or_(
                table.c.created_at < after.created_at,
                and_(table.c.created_at == after.created_at, table.c.id < after.id),
            )
        )
    return (
        select(table)
        .where(*where)
        .order_by(table.c.created_at.desc(), table.c.id.desc())
        .limit(limit)
    )
