"""Domain events (past tense, frozen) and their JSON envelope.

On the wire every event is one JSON object, the same on every bus backend::

    {"id": "evt_…", "type": "SmsRequested", "version": 1,
     "occurred_at": "2026-11-26T16:43:21.123456Z",
     "account_id": "acc_…", "notification_id": "ntf_…", "data": {…}}

``data`` holds the fields of the event class beyond the envelope's own.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import orjson

from pigeon.domain.ids import new_event_id
from pigeon.domain.status import NotificationStatus
from pigeon.errors import MalformedEvent

TOPIC_SMS_REQUESTED = "sms.requested"
TOPIC_STATUS = "notification.status"
TOPIC_SMS_DEAD = "sms.dead"
TOPIC_STATUS_DEAD = "notification.status.dead"

#: ``trace`` is not in the envelope either: it travels in the message headers
_ENVELOPE_FIELDS = ("event_id", "account_id", "notification_id", "occurred_at", "trace")
#: each event class's ``data`` fields, in order (filled on first use)
_DATA_FIELDS: dict[type, tuple[str, ...]] = {}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@functools.lru_cache(maxsize=4096)
def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix and microseconds.

    ``isoformat`` rather than ``strftime`` (a third of the time, and the year
    padded to 4 digits), and remembered: a notification's creation time is
    formatted for its answer, its request event and its log line.
    """
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_time(value: str) -> datetime:
    """Inverse of :func:`format_time` (accepts any ISO 8601 with an offset)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields every event carries; subclasses add their ``data``."""

    type_name: ClassVar[str] = "Event"
    version: ClassVar[int] = 1
    #: the status this event moves a notification to, if any
    status: ClassVar[NotificationStatus | None] = None

    account_id: str
    notification_id: str
    event_id: str = field(default_factory=new_event_id)
    occurred_at: datetime = field(default_factory=utcnow)
    #: the W3C trace context (``traceparent``, ``tracestate``) its message headers
    #: carry, when it continues a trace (see :mod:`pigeon.tracing`)
    trace: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def data_fields(cls) -> tuple[str, ...]:
        """The names of the event-specific fields, in order."""
        names = _DATA_FIELDS.get(cls)
        if names is None:  # once per class: dataclasses.fields() is slow on a hot path
            names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _ENVELOPE_FIELDS)
            _DATA_FIELDS[cls] = names
        return names

    def data(self) -> dict[str, Any]:
        """The event-specific fields, as they go into the envelope's ``data``."""
        return {name: getattr(self, name) for name in self.data_fields()}

    def detail(self) -> str:
        """One human line for the notification's timeline."""
        return ""


@dataclass(frozen=True, kw_only=True)
class SmsRequested(Event):
    """A caller asked for an SMS; the notification is stored and queued."""

    type_name: ClassVar[str] = "SmsRequested"
    status: ClassVar[NotificationStatus | None] = NotificationStatus.QUEUED

    to: str
    from_number: str | None
    body: str
    segments: int
    encoding: str

    def detail(self) -> str:
        return f"queued for delivery ({self.segments} segment(s), {self.encoding})"


@dataclass(frozen=True, kw_only=True)
class SmsSending(Event):
    """The SMS sender starts an attempt at the provider."""

    type_name: ClassVar[str] = "SmsSending"
    status: ClassVar[NotificationStatus | None] = NotificationStatus.SENDING

    attempt: int
    provider: str

    def detail(self) -> str:
        return f"attempt {self.attempt} via {self.provider}"


@dataclass(frozen=True, kw_only=True)
class SmsAttemptFailed(Event):
    """One attempt failed transiently; another is scheduled."""

    type_name: ClassVar[str] = "SmsAttemptFailed"

    attempt: int
    provider: str
    error: str
    error_code: int | None = None
    retry_in_seconds: float

    def detail(self) -> str:
        return (
            f"attempt {self.attempt} via {self.provider} failed: {self.error}; "
            f"retrying in {self.retry_in_seconds:.1f}s"
        )


@dataclass(frozen=True, kw_only=True)
class SmsWaiting(Event):
    """No attempt could start (every provider's circuit is open): the sender waits.

    Not an attempt: no retry budget is spent. The timeline says why and until when.
    """

    type_name: ClassVar[str] = "SmsWaiting"

    reason: str
    wait_seconds: float

    @property
    def next_try_at(self) -> datetime:
        """When the sender tries again."""
        return self.occurred_at + timedelta(seconds=self.wait_seconds)

    def detail(self) -> str:
        return f"waiting: {self.reason}, next try {self.next_try_at:%H:%M:%S} UTC"


@dataclass(frozen=True, kw_only=True)
class SmsSent(Event):
    """The provider accepted the message and gave it an id."""

    type_name: ClassVar[str] = "SmsSent"
    status: ClassVar[NotificationStatus | None] = NotificationStatus.SENT

    attempt: int
    provider: str
    provider_message_id: str

    def detail(self) -> str:
        return f"accepted by {self.provider} as {self.provider_message_id}"


@dataclass(frozen=True, kw_only=True)
class SmsDelivered(Event):
    """The provider reports the handset received the message."""

    type_name: ClassVar[str] = "SmsDelivered"
    status: ClassVar[NotificationStatus | None] = NotificationStatus.DELIVERED

    provider_message_id: str

    def detail(self) -> str:
        return f"delivered ({self.provider_message_id})"


@dataclass(frozen=True, kw_only=True)
class SmsUndelivered(Event):
    """The provider reports the carrier could not deliver the message."""

    type_name: ClassVar[str] = "SmsUndelivered"
    status: ClassVar[NotificationStatus | None] = NotificationStatus.UNDELIVERED

    provider_message_id: str
    error_code: int | None = None
    error: str = ""

    def detail(self) -> str:
        return f"undelivered: {self.error or self.error_code or 'carrier did not deliver'}"


@dataclass(frozen=True, kw_only=True)
class SmsFailed(Event):
    """The message will not be sent: permanent error or retries exhausted."""

    type_name: ClassVar[str] = "SmsFailed"
    status: ClassVar[NotificationStatus | None] = NotificationStatus.FAILED

    reason: str
    error_code: int | None = None
    attempts: int = 0

    def detail(self) -> str:
        return f"failed after {self.attempts} attempt(s): {self.reason}"


@dataclass(frozen=True, kw_only=True)
class SmsCanceled(Event):
    """The caller canceled the notification before any provider was handed it."""

    type_name: ClassVar[str] = "SmsCanceled"
    status: ClassVar[NotificationStatus | None] = NotificationStatus.CANCELED

    reason: str = "canceled by the caller"

    def detail(self) -> str:
        return self.reason


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type_name: cls
    for cls in (
        SmsRequested,
        SmsSending,
        SmsAttemptFailed,
        SmsWaiting,
        SmsSent,
        SmsDelivered,
        SmsUndelivered,
        SmsFailed,
        SmsCanceled,
    )
}


def to_envelope(event: Event) -> dict[str, Any]:
    """The event as the documented JSON envelope (a plain dict)."""
    return {
        "id": event.event_id,
        "type": event.type_name,
        "version": event.version,
        "occurred_at": format_time(event.occurred_at),
        "account_id": event.account_id,
        "notification_id": event.notification_id,
        "data": event.data(),
    }


def encode(event: Event) -> bytes:
    """Serialize ``event`` to its JSON envelope."""
    return orjson.dumps(to_envelope(event))


def decode(payload: bytes | str) -> Event:
    """Parse a JSON envelope back into its event, or raise :class:`MalformedEvent`."""
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"event is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise MalformedEvent("event envelope must be a JSON object")
    type_name = raw.get("type")
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise MalformedEvent(f"unknown event type {type_name!r}")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent(f"{type_name}: 'data' must be a JSON object")
    for name in ("id", "account_id", "notification_id", "occurred_at"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise MalformedEvent(f"{type_name}: envelope field {name!r} must be a non-empty string")
    _check_data(cls, data)
    try:
        return cls(
            event_id=raw["id"],
            account_id=raw["account_id"],
            notification_id=raw["notification_id"],
            occurred_at=parse_time(raw["occurred_at"]),
            **data,
        )
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"{type_name}: malformed envelope or data: {exc}") from exc


def _check_data(cls: type[Event], data: dict[str, Any]) -> None:
    """Every ``data`` field present, known, and of its declared JSON type."""
    expected = _data_types(cls)
    for name in data:
        if name not in expected:
            raise MalformedEvent(f"{cls.type_name}: unknown data field {name!r}")
    for name, (types, required) in expected.items():
        if name not in data:
            if required:
                raise MalformedEvent(f"{cls.type_name}: data field {name!r} is missing")
            continue
        value = data[name]
        # bool is an int in Python, never in our events
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise MalformedEvent(
                f"{cls.type_name}: data field {name!r} has the wrong type ({type(value).__name__})"
            )


_DATA_TYPES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {}


def _data_types(cls: type[Event]) -> dict[str, tuple[tuple[type, ...], bool]]:
    """Per data field: the accepted JSON types and whether it is required (cached)."""
    cached = _DATA_TYPES.get(cls.type_name)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    result = {}
    for f in dataclasses.fields(cls):
        if f.name in _ENVELOPE_FIELDS:
            continue
        args = typing.get_args(hints[f.name]) or (hints[f.name],)
        types = tuple(type(None) if a is None else a for a in args)
        if float in types:
            types = (*types, int)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        result[f.name] = (types, required)
    _DATA_TYPES[cls.type_name] = result
    return result


def route(event: Event) -> tuple[str, str]:
    """The topic and partition key an event is published with.

    Requests are keyed by recipient (one recipient's messages stay in order);
    status events by notification (one notification's history stays in order).
    """
    if isinstance(event, SmsRequested):
        return TOPIC_SMS_REQUESTED, event.to
    return TOPIC_STATUS, event.notification_id
