"""Notification.new_sms: validation of a request for an SMS."""

from __future__ import annotations

import pytest

from pigeon.domain.events import SmsRequested
from pigeon.domain.notification import MAX_BODY_CHARS, Notification
from pigeon.domain.status import NotificationStatus
from pigeon.errors import InvalidPhoneNumber, ValidationError

TO = "+14155550123"
FROM = "+14155550100"


def _sms(**overrides: object) -> Notification:
    fields: dict[str, object] = {"account_id": "acc_1", "to": TO, "body": "Hello"}
    fields.update(overrides)
    return Notification.new_sms(**fields)  # type: ignore[arg-type]


def test_a_valid_request_becomes_an_accepted_sms_notification() -> None:
    """Given a valid recipient and body, the notification is accepted with its segment count."""
    notification = _sms(from_number=FROM, metadata={"order": 42})
    assert notification.id.startswith("ntf_")
    assert notification.account_id == "acc_1"
    assert notification.channel == "sms"
    assert notification.to == TO
    assert notification.from_number == FROM
    assert notification.body == "Hello"
    assert notification.metadata == {"order": 42}
    assert (notification.segments, notification.encoding) == (1, "GSM-7")
    assert notification.status is NotificationStatus.ACCEPTED
    assert notification.created_at.tzinfo is not None


def test_each_notification_gets_its_own_id() -> None:
    """Two identical requests are two notifications."""
    assert _sms().id != _sms().id


def test_the_sender_and_metadata_are_optional() -> None:
    """Without from and metadata, the sender is None and metadata is empty."""
    notification = _sms()
    assert notification.from_number is None
    assert notification.metadata == {}


def test_the_metadata_is_copied_not_shared() -> None:
    """Changing the caller's dict afterwards does not change the notification."""
    metadata = {"k": "v"}
    notification = _sms(metadata=metadata)
    metadata["k"] = "changed"
    assert notification.metadata == {"k": "v"}


def test_a_unicode_body_is_counted_as_ucs2() -> None:
    """A body with an emoji is UCS-2 and its segments are counted in UTF-16 units."""
    notification = _sms(body="\U0001f600" * 36)
    assert (notification.segments, notification.encoding) == (2, "UCS-2")


@pytest.mark.parametrize("body", ["", " ", "\n\t  \r\n"], ids=["empty", "space", "whitespace"])
def test_an_empty_or_blank_body_is_rejected(body: str) -> None:
    """A body with nothing to read is refused, naming the field."""
    with pytest.raises(ValidationError) as caught:
        _sms(body=body)
    assert caught.value.field == "body"
    assert "empty" in caught.value.reason


def test_a_body_of_exactly_1600_characters_is_accepted() -> None:
    """1,600 characters is the maximum, inclusive."""
    assert MAX_BODY_CHARS == 1600
    notification = _sms(body="a" * 1600)
    assert notification.segments == 11  # ceil(1600 / 153)


def test_a_body_of_1601_characters_is_rejected() -> None:
    """One character over the maximum is refused, saying how long it was."""
    with pytest.raises(ValidationError) as caught:
        _sms(body="a" * 1601)
    assert caught.value.field == "body"
    assert "1601" in caught.value.reason
    assert "1600" in caught.value.reason


def test_the_body_limit_counts_characters_not_bytes() -> None:
    """1,600 multi-byte characters are still within the limit."""
    assert _sms(body="\u0436" * 1600).encoding == "UCS-2"


@pytest.mark.parametrize("to", ["4155550123", "+1 415 555 0123", "+11234567890", "+0123"])
def test_an_invalid_recipient_is_rejected_naming_to(to: str) -> None:
    """The error points at the 'to' field."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        _sms(to=to)
    assert caught.value.field == "to"


@pytest.mark.parametrize("from_number", ["4155550100", "+1 415 555 0100", "", "sender"])
def test_an_invalid_sender_is_rejected_naming_from(from_number: str) -> None:
    """The error points at the 'from' field, the name callers use in the API."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        _sms(from_number=from_number)
    assert caught.value.field == "from"


def test_the_requested_event_carries_the_notification() -> None:
    """The SmsRequested event has the notification's ids, time, and message fields."""
    notification = _sms(from_number=FROM, body="Code: {1234}")
    event = notification.requested_event()
    assert isinstance(event, SmsRequested)
    assert event.account_id == notification.account_id
    assert event.notification_id == notification.id
    assert event.occurred_at == notification.created_at
    assert (event.to, event.from_number, event.body) == (TO, FROM, "Code: {1234}")
    assert (event.segments, event.encoding) == (notification.segments, "GSM-7")
