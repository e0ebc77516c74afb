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

from pigeon.api.schemas import NotificationAccepted, NotificationDetail, TimelineItem, UsageItem
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

detail_body: Callable[[NotificationView], dict[str, Any]] = shape(
    NotificationDetail,
    {
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
        "timeline": lambda v: [timeline_item(e) for e in v.timeline],
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
