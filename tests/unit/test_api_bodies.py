"""Response bodies and the response models /docs shows are one definition."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import BaseModel

from pigeon.api.bodies import accepted_body, detail_body, shape, usage_item
from pigeon.api.schemas import NotificationAccepted, NotificationDetail, UsageItem
from pigeon.domain.notification import Notification, NotificationView, TimelineEntry, UsageDay

AT = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC)


def _notification() -> Notification:
    return Notification.new_sms(
        account_id="acc_1", to="+14155550123", body="hello", metadata={"order": "42"}
    )


def _valid(model: type[BaseModel], body: dict[str, object]) -> None:
    """Every field of ``model``, each of a type it accepts, and nothing else."""
    assert list(body) == list(model.model_fields)
    model.model_validate(body)


def test_the_202_body_is_the_accepted_model() -> None:
    _valid(NotificationAccepted, accepted_body(_notification()))


def test_the_detail_body_is_the_detail_model_with_its_timeline() -> None:
    view = NotificationView(
        notification=_notification(),
        attempts=2,
        provider="backup",
        provider_message_id="SM1",
        last_error=None,
        updated_at=AT,
        timeline=[TimelineEntry("accepted", AT, "accepted by the API")],
    )
    body = detail_body(view)
    _valid(NotificationDetail, body)
    detail = NotificationDetail.model_validate(body)
    assert detail.timeline[0].at == AT
    assert (detail.provider, detail.attempts, detail.metadata) == ("backup", 2, {"order": "42"})


def test_a_usage_day_is_the_usage_model() -> None:
    _valid(UsageItem, usage_item(UsageDay(date(2026, 11, 30), 3, 4)))


def test_a_body_that_misses_or_adds_a_field_of_its_model_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match="UsageItem"):
        shape(UsageItem, {"date": lambda d: d, "messages": lambda d: d})
    with pytest.raises(TypeError, match="UsageItem"):
        shape(
            UsageItem,
            {"date": str, "messages": str, "segments": str, "cost": str},
        )
