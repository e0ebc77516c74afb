"""Response bodies, written once: each is built from its response model's field list.

The routes answer with dicts encoded by orjson (no pydantic validation or
serialisation per response: the fast path stays fast), while ``/docs`` shows
the pydantic response models of :mod:`pigeon.api.schemas`. So that the two
cannot drift, every body is built here from a table of one getter per model
field, and each table must name exactly its model's fields, in order (checked
when this module is imported): a field added to a model without a getter, or a
getter left without a field, fails at start-up and in the tests, never in a
client. The tests also validate every body against its model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from pigeon.api.schemas import (
    NotificationAccepted,
    NotificationDetail,
    NotificationPage,
    NotificationSummary,
    TimelineItem,
    UsageItem,
)
from pigeon.domain.events import format_time
from pigeon.domain.notification import Notification, NotificationView, TimelineEntry, UsageDay

T = TypeVar("T")


def shape(
    model: type[BaseModel], getters: Mapping[str, Callable[[T], Any]]
) -> Callable[[T], dict[str, Any]]:
    """A builder of ``model``'s body from a value, one getter per field."""
    if list(getters) != list(model.model_fields):
        raise TypeError(
            f"the body of {model.__name__} names {list(getters)}, "
            f"its model {list(model.model_fields)}"
        )
    fields = tuple(getters.items())

    def build(value: T) -> dict[str, Any]:
        return {name: get(value) for name, get in fields}

    build.__doc__ = f"The {model.__name__} body of a value."
    return build


accepted_body: Callable[[Notification], dict[str, Any]] = shape(
    NotificationAccepted,
    {
        "id": lambda n: n.id,
        "status": lambda n: n.status.value,
        "channel": lambda n: n.channel,
        "to": lambda n: n.to,
        "segments": lambda n: n.segments,
        "created_at": lambda n: format_time(n.created_at),
    },
)

timeline_item: Callable[[TimelineEntry], dict[str, Any]] = shape(
    TimelineItem,
    {
        "status": lambda e: e.status,
        "at": lambda e: format_time(e.at),
        "detail": lambda e: e.detail,
    },
)

#: every field a body about a stored notification can have
_VIEW_FIELDS: dict[str, Callable[[NotificationView], Any]] = {
    "id": lambda v: v.notification.id,
    "status": lambda v: v.notification.status.value,
    "channel": lambda v: v.notification.channel,
    "to": lambda v: v.notification.to,
    "segments": lambda v: v.notification.segments,
    "metadata": lambda v: v.notification.metadata,
    "created_at": lambda v: format_time(v.notification.created_at),
    "updated_at": lambda v: format_time(v.updated_at),
    "attempts": lambda v: v.attempts,
    "provider": lambda v: v.provider,
    "provider_message_id": lambda v: v.provider_message_id,
    "last_error": lambda v: v.last_error,
    "next_attempt_at": lambda v: format_time(v.next_attempt_at) if v.next_attempt_at else None,
    "timeline": lambda v: [timeline_item(e) for e in v.timeline],
}


def _of_view(model: type[BaseModel]) -> Callable[[NotificationView], dict[str, Any]]:
    """``model``'s body from a view: its fields' getters, in its order (a field without
    one is a ``KeyError`` at import)."""
    return shape(model, {name: _VIEW_FIELDS[name] for name in model.model_fields})


detail_body = _of_view(NotificationDetail)
summary_item = _of_view(NotificationSummary)

#: a page: its notifications and the cursor of the next page (None on the last)
Page = tuple[list[NotificationView], str | None]

page_body: Callable[[Page], dict[str, Any]] = shape(
    NotificationPage,
    {
        "items": lambda p: [summary_item(v) for v in p[0]],
        "next": lambda p: p[1],
    },
)

usage_item: Callable[[UsageDay], dict[str, Any]] = shape(
    UsageItem,
    {
        "date": lambda d: d.day.isoformat(),
        "messages": lambda d: d.messages,
        "segments": lambda d: d.segments,
    },
)
