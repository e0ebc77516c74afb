"""Values of the webhook tables: endpoints and deliveries as the API and the dispatcher
see them, and the rows they are read from (see :mod:`pigeon.store.webhooks`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row

from pigeon.domain.webhooks import secret_key
from pigeon.store.rows import utc

ENDPOINT_PREFIX = "whe_"
MESSAGE_PREFIX = "msg_"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
DELIVERY_STATES = (PENDING, DELIVERED, FAILED)
#: endpoints one account may have
MAX_ENDPOINTS = 20
#: error texts kept per delivery at most
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class EndpointView:
    """An endpoint as its account sees it (never its secrets)."""

    id: str
    account_id: str
    url: str
    event_types: list[str]
    description: str
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    #: while a rotation's grace period lasts: when the old secret stops signing
    previous_secret_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """One delivery in an endpoint's log."""

    id: str
    endpoint_id: str
    event_id: str
    notification_id: str
    event_type: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: str


@dataclass(frozen=True, slots=True)
class Subscriber:
    """An enabled endpoint and the event types it wants (empty: all)."""

    endpoint_id: str
    event_types: frozenset[str]

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery the dispatcher's bus handler writes."""

    endpoint_id: str
    event_id: str
    notification_id: str
    event_type: str
    payload: str


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A claimed delivery, with what sending it needs."""

    seq: int
    id: str
    endpoint_id: str
    url: str
    #: the HMAC keys that sign it: the secret's, and the previous one's in its grace period
    keys: tuple[bytes, ...]
    payload: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What became of one claimed delivery.

    ``counted=False``: not tried (the endpoint's breaker is open), only put off.
    ``next_attempt_at`` None on a failure: no attempt left, the delivery failed.
    """

    seq: int
    endpoint_id: str
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    gone: bool = False
    counted: bool = True


def endpoint_view(row: Row[Any]) -> EndpointView:
    """An endpoint's row as its account sees it."""
    return EndpointView(
        id=row.id,
        account_id=row.account_id,
        url=row.url,
        event_types=list(orjson.loads(row.event_types)),
        description=row.description,
        created_at=utc(row.created_at),
        disabled_at=utc(row.disabled_at) if row.disabled_at else None,
        disabled_reason=row.disabled_reason,
        failing_since=utc(row.failing_since) if row.failing_since else None,
        previous_secret_expires_at=(
            utc(row.previous_secret_expires_at)
            if row.previous_secret and row.previous_secret_expires_at
            else None
        ),
    )


def delivery_view(row: Row[Any]) -> DeliveryView:
    """A delivery's row as the delivery log shows it."""
    return DeliveryView(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        notification_id=row.notification_id,
        event_type=row.event_type,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=utc(row.next_attempt_at) if row.next_attempt_at else None,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=utc(row.created_at),
        delivered_at=utc(row.delivered_at) if row.delivered_at else None,
        payload=row.payload,
    )


def due_delivery(row: Any, now: datetime) -> DueDelivery:  # a row of claim_due's query
    """A claimed row, with the keys that sign it now."""
    keys = [secret_key(row.secret)]
    expires = row.previous_secret_expires_at
    if row.previous_secret and expires is not None and utc(expires) > now:
        keys.append(secret_key(row.previous_secret))
    return DueDelivery(
        seq=row.seq,
        id=row.id,
        endpoint_id=row.endpoint_id,
        url=row.url,
        keys=tuple(keys),
        payload=row.payload.encode(),
        attempts=row.attempts,
    )
