"""Request and response bodies of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pigeon.domain.notification import CHANNELS, MAX_BODY_CHARS
from pigeon.domain.status import NotificationStatus

MAX_METADATA_BYTES = 4096
#: deeper JSON than this is refused (orjson, which writes our events, stops at 254)
MAX_METADATA_DEPTH = 32
#: the integers orjson can write, so an event envelope always encodes
_SMALLEST_INT, _LARGEST_INT = -(2**63), 2**64 - 1
#: what no store, event or provider form can carry: NUL (PostgreSQL text refuses
#: it) and lone surrogates (not Unicode, so not UTF-8)
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")
#: metadata is stored as JSON text, where NUL is written escaped: only surrogates fail
_UNENCODABLE = re.compile("[\ud800-\udfff]")


def unsendable_reason(text: str, pattern: re.Pattern[str] = _UNSENDABLE) -> str | None:
    """Why ``text`` cannot be stored and sent as it is, or None when it can."""
    found = pattern.search(text)
    if found is None:
        return None
    char = found.group()
    position = found.start()
    if char == "\x00":
        return f"contains a NUL character (\\u0000) at position {position}, which cannot be sent"
    return (
        f"contains a lone UTF-16 surrogate (\\u{ord(char):04x}) at position {position}, "
        "which is not valid Unicode; send characters outside the BMP as a surrogate pair"
    )


def _json_problem(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    """Where and why a parsed JSON value cannot round-trip through events and store, or None."""
    if depth > MAX_METADATA_DEPTH:
        return path, f"nested deeper than {MAX_METADATA_DEPTH} levels"
    if isinstance(value, str):
        reason = unsendable_reason(value, _UNENCODABLE)
        return (path, reason) if reason else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if not _SMALLEST_INT <= value <= _LARGEST_INT:
            return path, f"integer {value} does not fit in 64 bits"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"{value} is not a JSON number")
    if isinstance(value, list | dict):
        return _container_problem(value, path, depth)
    return path, f"{type(value).__name__} is not a JSON value"


def _container_problem(
    value: list[Any] | dict[str, Any], path: str, depth: int
) -> tuple[str, str] | None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    for key, item in value.items():
        reason = unsendable_reason(key, _UNENCODABLE)
        if reason:
            return path, f"a key {reason}"
        problem = _json_problem(item, f"{path}.{key}", depth + 1)
        if problem:
            return problem
    return None


def _sendable(value: str) -> str:
    reason = unsendable_reason(value)
    if reason:
        raise ValueError(reason)
    return value


class SendNotification(BaseModel):
    """``POST /v1/notifications``."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="Delivery channel; only 'sms' for now.", examples=["sms"])
    to: str = Field(description="Recipient in E.164 format.", examples=["+14155550123"])
    body: str = Field(description=f"Message text, 1 to {MAX_BODY_CHARS} characters.")
    from_: str | None = Field(
        default=None,
        alias="from",
        description="Sender number (E.164); default from settings.",
        examples=["+15005550006"],
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="Your own JSON object (at most 4 KB), stored with it."
    )

    @field_validator("channel", "to", "body", "from_")
    @classmethod
    def _sendable_text(cls, value: str | None) -> str | None:
        return None if value is None else _sendable(value)

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str) -> str:
        if value not in CHANNELS:
            raise ValueError(f"unknown channel {value!r}; supported: {', '.join(CHANNELS)}")
        return value

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        reason = None if value is None else metadata_problem(value)
        if reason is not None:
            raise ValueError(reason)
        return value


def metadata_problem(value: dict[str, Any]) -> str | None:
    """Why ``value`` cannot be a notification's metadata, or None when it can."""
    # checked before encoding: orjson refuses these with a TypeError
    problem = _json_problem(value, "metadata", 0)
    if problem:
        path, reason = problem
        return reason if path == "metadata" else f"at {path}: {reason}"
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        return f"must be at most {MAX_METADATA_BYTES} bytes as JSON"
    return None


class NotificationAccepted(BaseModel):
    """The answer to an accepted notification."""

    id: str
    status: Literal["accepted"] = "accepted"
    channel: str
    to: str
    segments: int
    created_at: datetime


#: the most notifications one ``POST /v1/notifications:batch`` may carry
MAX_BATCH = 1000


class BatchItem(SendNotification):
    """One notification of a batch: a send request, plus its own idempotency key."""

    idempotency_key: str | None = Field(
        default=None,
        description="Like the Idempotency-Key header of a single send, for this item alone: "
        "a retried batch gets the first answer for every item that carried one.",
        examples=["order-1234-shipped"],
    )


class PlainItem(NamedTuple):
    """A batch item known valid without a model (:func:`plain_item`): what
    :class:`BatchItem` would have read from it."""

    to: str
    body: str
    from_: str | None
    metadata: dict[str, Any] | None
    idempotency_key: None = None


#: what a plain item's object may hold: the send request's fields, by their JSON names
_PLAIN_KEYS = frozenset(
    field.alias or name for name, field in SendNotification.model_fields.items()
)


def plain_item(raw: object) -> PlainItem | None:
    """``raw`` as a valid batch item, when that is plain without building a model; else
    None, and :class:`BatchItem` checks it (and names each problem).

    Plain: an object of the send request's keys only (no idempotency key), strings
    where the model wants strings (its lax mode takes nothing else from JSON), a
    known channel, text that :func:`unsendable_reason` lets through and metadata
    that :func:`metadata_problem` does. The model would accept it and read the
    same values; building it was a fifth of a batched notification's cost.
    """
    if type(raw) is not dict or not _PLAIN_KEYS.issuperset(raw):
        return None
    channel, to, body = raw.get("channel"), raw.get("to"), raw.get("body")
    sender, metadata = raw.get("from"), raw.get("metadata")
    if channel not in CHANNELS or type(to) is not str or type(body) is not str:
        return None
    if sender is not None and (type(sender) is not str or _UNSENDABLE.search(sender)):
        return None
    if _UNSENDABLE.search(to) or _UNSENDABLE.search(body):
        return None
    if metadata is not None and (type(metadata) is not dict or metadata_problem(metadata)):
        return None
    return PlainItem(to, body, sender, metadata)


class SendBatch(BaseModel):
    """``POST /v1/notifications:batch``: up to 1,000 notifications, each checked on its own."""

    model_config = ConfigDict(extra="forbid")

    notifications: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} send requests (the body of POST /v1/notifications, "
        "plus an optional idempotency_key each).",
    )


class Problem(BaseModel):
    """An RFC 9457 problem (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = Field(
        default=None, description="Each invalid field and why (validation problems)."
    )


class BatchResult(BaseModel):
    """What became of one item of a batch."""

    index: int = Field(description="The item's position in the request, from 0.")
    status: int = Field(
        description="202 when accepted (or answered again under its idempotency key); "
        "otherwise the status a single send would have answered, with its problem."
    )
    notification: NotificationAccepted | None = Field(
        default=None, description="The accepted notification (status 202)."
    )
    replayed: bool = Field(
        default=False,
        description="True when the item's idempotency key was used before: the first answer.",
    )
    problem: Problem | None = Field(default=None, description="Why it was refused (not 202).")


class BatchAccepted(BaseModel):
    """The answer to a batch (207 Multi-Status): one result per item, in order."""

    accepted: int = Field(description="Items accepted (202), replays included.")
    refused: int = Field(description="Items refused (each with its problem).")
    results: list[BatchResult]


class TimelineItem(BaseModel):
    """One step of a notification's history."""

    status: NotificationStatus = Field(description="The status it was in after this step.")
    at: datetime
    detail: str = Field(description="What happened, for people.")


class NotificationSummary(BaseModel):
    """One notification in a listing (``GET /v1/notifications``): no timeline."""

    id: str
    status: NotificationStatus = Field(
        description="Where it is: forward-only, final at delivered, undelivered or failed."
    )
    channel: str
    to: str
    segments: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    attempts: int
    provider: str | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(
        description="While it waits for a retry or for a provider's circuit to close: "
        "when it is tried next; otherwise null."
    )


class NotificationDetail(NotificationSummary):
    """``GET /v1/notifications/{id}``: a notification with its provider id and timeline."""

    provider_message_id: str | None
    timeline: list[TimelineItem]


class NotificationPage(BaseModel):
    """A page of notifications, newest first."""

    items: list[NotificationSummary]
    next: str | None = Field(
        description="Pass as ?cursor= for the next page (same filters); null on the last page."
    )


class UsageItem(BaseModel):
    """SMS usage of one UTC day."""

    date: date
    messages: int
    segments: int
