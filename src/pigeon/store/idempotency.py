"""Idempotency keys: a retried ``POST /v1/notifications`` gets the first answer.

A key is claimed in the same transaction that stores the notification, with
``INSERT … ON CONFLICT DO NOTHING``: of two concurrent requests with one key,
exactly one inserts the claim and its notification; the other finds the key
taken, stores nothing, and is answered from the winner's record. A key older
than the retention period is forgotten (and may be used again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from pigeon.domain.events import utcnow
from pigeon.errors import KeyAlreadyUsed
from pigeon.store.schema import idempotency_keys

#: keys per ``IN (...)`` lookup (SQLite allows 32,766 variables; stay far below)
_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request that carries an ``Idempotency-Key``."""

    account_id: str
    key: str
    #: SHA-256 of the request's canonical JSON: "the same request" means the same hash
    request_hash: str
    #: the answer to give this request and every retry of it (JSON text)
    response: str


@dataclass(frozen=True, slots=True)
class IdempotentRecord:
    """What the first request with a key was answered."""

    request_hash: str
    notification_id: str
    response: str
    created_at: datetime


def claim(
    conn: Connection, request: IdempotentRequest, notification_id: str, ttl: timedelta
) -> None:
    """Claim ``request.key`` in ``conn``'s transaction, or raise :class:`KeyAlreadyUsed`."""
    now = utcnow()
    conn.execute(
        delete(idempotency_keys).where(
            and_(
                idempotency_keys.c.account_id == request.account_id,
                idempotency_keys.c.key == request.key,
                idempotency_keys.c.created_at < now - ttl,
            )
        )
    )
    upsert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    result = conn.execute(
        upsert(idempotency_keys)
        .values(
            account_id=request.account_id,
            key=request.key,
            request_hash=request.request_hash,
            notification_id=notification_id,
            response=request.response,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["account_id", "key"])
        # psycopg reports no rowcount (-1) for this statement: ask for the row instead
        .returning(idempotency_keys.c.key)
    )
    if result.first() is None:
        raise KeyAlreadyUsed(f"idempotency key {request.key!r} is already in use")


def find(conn: Connection, account_id: str, key: str, ttl: timedelta) -> IdempotentRecord | None:
    """The live record of ``key`` in ``account_id``, if any."""
    return find_many(conn, account_id, [key], ttl).get(key)


def find_many(
    conn: Connection, account_id: str, keys: list[str], ttl: timedelta
) -> dict[str, IdempotentRecord]:
    """The live records of ``keys`` in ``account_id``, by key (a batch's lookup)."""
    found: dict[str, IdempotentRecord] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        rows = conn.execute(
            select(
                idempotency_keys.c.key,
                idempotency_keys.c.request_hash,
                idempotency_keys.c.notification_id,
                idempotency_keys.c.response,
                idempotency_keys.c.created_at,
            ).where(
                idempotency_keys.c.account_id == account_id,
                idempotency_keys.c.key.in_(keys[start : start + _IN_CHUNK]),
                idempotency_keys.c.created_at >= utcnow() - ttl,
            )
        )
        for row in rows:
            found[row.key] = IdempotentRecord(
                row.request_hash, row.notification_id, row.response, row.created_at
            )
    return found
