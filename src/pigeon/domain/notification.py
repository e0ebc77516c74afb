"""The notification aggregate and the read models the API returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pigeon.domain.events import SmsRequested, utcnow
from pigeon.domain.ids import new_notification_id, request_event_id
from pigeon.domain.phone import normalize_e164
from pigeon.domain.segments import count_segments
from pigeon.domain.status import NotificationStatus
from pigeon.errors import ValidationError

MAX_BODY_CHARS = 1600
CHANNELS = ("sms",)


@dataclass(frozen=True, kw_only=True)
class Notification:
    """One message a caller asked us to deliver."""

    id: str
    account_id: str
    channel: str
    to: str
    from_number: str | None
    body: str
    metadata: dict[str, Any]
    segments: int
    encoding: str
    status: NotificationStatus
    created_at: datetime
    #: the trace its request event continues (headers, see :mod:`pigeon.tracing`); not stored
    trace: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def new_sms(
        cls,
        *,
        account_id: str,
        to: str,
        body: str,
        from_number: str | None = None,
        metadata: dict[str, Any] | None = None,
        now: datetime | None = None,
        notification_id: str | None = None,
    ) -> Notification:
        """Validate a request for an SMS and build the accepted notification.

        ``now``: its creation time (default: this instant); the items of one batch
        share one, as they share one transaction. ``notification_id``: its id, made
        at ``now`` (default: a new one; a batch makes its ids together).
        """
        recipient = normalize_e164(to, "to")
        sender = normalize_e164(from_number, "from") if from_number is not None else None
        if not body.strip():
            raise ValidationError("body", "must not be empty")
        if len(body) > MAX_BODY_CHARS:
            raise ValidationError(
                "body", f"is {len(body)} characters; the maximum is {MAX_BODY_CHARS}"
            )
        count = count_segments(body)
        created_at = utcnow() if now is None else now
        return cls(
            id=notification_id or new_notification_id(int(created_at.timestamp() * 1000)),
            account_id=account_id,
            channel="sms",
            to=recipient,
            from_number=sender,
            body=body,
            metadata=dict(metadata or {}),
            segments=count.segments,
            encoding=count.encoding,
            status=NotificationStatus.ACCEPTED,
            created_at=created_at,
        )

    def requested_event(self) -> SmsRequested:
        """The event that asks the SMS sender to deliver this notification."""
        return SmsRequested(
            event_id=request_event_id(self.id),
            account_id=self.account_id,
            notification_id=self.id,
            occurred_at=self.created_at,
            to=self.to,
            from_number=self.from_number,
            body=self.body,
            segments=self.segments,
            encoding=self.encoding,
            trace=self.trace,
        )


@dataclass(frozen=True)
class TimelineEntry:
    """One step in a notification's history."""

    status: str
    at: datetime
    detail: str


@dataclass(frozen=True, kw_only=True)
class NotificationView:
    """A notification as ``GET /v1/notifications/{id}`` shows it."""

    notification: Notification
    attempts: int
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    updated_at: datetime
    timeline: list[TimelineEntry] = field(default_factory=list)
    #: while it waits for a retry or for an open circuit: when it is tried next
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class UsageDay:
    """Messages and segments one account sent on one UTC day."""

    day: date
    messages: int
    segments: int


@dataclass(frozen=True)
class AccountLimits:
    """What an account may do; ``None`` in a field: no limit of that kind."""

    #: requests per second, refilled continuously (a token bucket)
    rate_per_second: int | None = None
    #: how many requests may come at once after a quiet spell (default: one second's worth)
    rate_burst: int | None = None
    #: SMS segments per calendar month (UTC)
    monthly_segment_quota: int | None = None

    @property
    def burst(self) -> int:
        """The bucket's size."""
        return self.rate_burst or self.rate_per_second or 0


@dataclass(frozen=True)
class Account:
    """A tenant: notifications, keys and usage belong to one."""

    id: str
    name: str
    #: authenticated with an admin key: may operate the dead-letter queue
    is_admin: bool = False
    #: the account's limits; ``None`` when it has none (the common case costs one check)
    limits: AccountLimits | None = None
