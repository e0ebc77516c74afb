"""Request and response bodies of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pigeon.domain.notification import CHANNELS, MAX_BODY_CHARS

MAX_METADATA_BYTES = 4096


class SendNotification(BaseModel):
    """``POST /v1/notifications``."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="Delivery channel; only 'sms' for now.", examples=["sms"])
    to: str = Field(description="Recipient in E.164 format.", examples=["+14155550123"])
    body: str = Field(description=f"Message text, 1 to {MAX_BODY_CHARS} characters.")
    from_: str | None = Field(
        default=None, alias="from", description="Sender number (E.164); default from settings."
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="Your own JSON object (at most 4 KB), stored with it."
    )

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str) -> str:
        if value not in CHANNELS:
            raise ValueError(f"unknown channel {value!r}; supported: {', '.join(CHANNELS)}")
        return value

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(orjson.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
        return value


class NotificationAccepted(BaseModel):
    """The answer to an accepted notification."""

    id: str
    status: Literal["accepted"] = "accepted"
    channel: str
    to: str
    segments: int
    created_at: datetime


class TimelineItem(BaseModel):
    """One step of a notification's history."""

    status: str
    at: datetime
    detail: str


class NotificationDetail(BaseModel):
    """``GET /v1/notifications/{id}``."""

    id: str
    status: str
    channel: str
    to: str
    segments: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    attempts: int
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    timeline: list[TimelineItem]


class UsageItem(BaseModel):
    """SMS usage of one UTC day."""

    date: date
    messages: int
    segments: int
