"""Twilio status callbacks mapped to delivery reports, and reports to domain events."""

from __future__ import annotations

import pytest

from pigeon.domain.delivery import DeliveryReport, ReportedStatus
from pigeon.domain.events import SmsDelivered, SmsFailed, SmsSent, SmsUndelivered
from pigeon.providers.twilio_reports import (
    downgrade_stored_report,
    report_from_callback,
    report_from_resource,
    upgrade_stored_callback,
)


def _map(**params: str) -> object:
    return report_from_callback(params).event("acc_1", "ntf_1", provider="twilio", attempt=0)


def test_sent_becomes_sms_sent_with_the_message_id() -> None:
    """'sent' is the provider handing the message to the carrier."""
    event = _map(MessageSid="SM1", MessageStatus="sent")
    assert isinstance(event, SmsSent)
    assert (event.account_id, event.notification_id) == ("acc_1", "ntf_1")
    assert (event.provider, event.provider_message_id, event.attempt) == ("twilio", "SM1", 0)


def test_delivered_becomes_sms_delivered() -> None:
    """'delivered' means the handset received it."""
    event = _map(MessageSid="SM1", MessageStatus="delivered")
    assert isinstance(event, SmsDelivered)
    assert event.provider_message_id == "SM1"
    assert event.notification_id == "ntf_1"


def test_undelivered_carries_the_error_code_and_message() -> None:
    """The carrier's error code and text go into the event."""
    event = _map(
        MessageSid="SM1",
        MessageStatus="undelivered",
        ErrorCode="30003",
        ErrorMessage="Unreachable destination handset",
    )
    assert isinstance(event, SmsUndelivered)
    assert event.provider_message_id == "SM1"
    assert event.error_code == 30003
    assert event.error == "Unreachable destination handset"


def test_undelivered_without_an_error_code_has_none() -> None:
    """A missing or non-numeric ErrorCode is None, not a crash."""
    event = _map(MessageSid="SM1", MessageStatus="undelivered", ErrorCode="abc")
    assert isinstance(event, SmsUndelivered)
    assert event.error_code is None
    assert event.error == ""


def test_failed_becomes_sms_failed_with_the_code_in_the_reason() -> None:
    """'failed' ends the notification, saying which error the provider gave."""
    event = _map(MessageSid="SM1", MessageStatus="failed", ErrorCode="30008")
    assert isinstance(event, SmsFailed)
    assert event.error_code == 30008
    assert "30008" in event.reason


def test_failed_without_a_code_says_unknown() -> None:
    """A failure without an ErrorCode still explains itself."""
    event = _map(MessageSid="SM1", MessageStatus="failed")
    assert isinstance(event, SmsFailed)
    assert event.error_code is None
    assert "unknown" in event.reason


@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "scheduled", "", "bogus"])
def test_interim_and_unknown_statuses_map_to_nothing(status: str) -> None:
    """Statuses we already know from our own side produce no event."""
    assert _map(MessageSid="SM1", MessageStatus=status) is None


def test_the_legacy_sms_sid_and_sms_status_names_are_understood() -> None:
    """Older callbacks use SmsSid/SmsStatus instead of MessageSid/MessageStatus."""
    event = _map(SmsSid="SM9", SmsStatus="delivered")
    assert isinstance(event, SmsDelivered)
    assert event.provider_message_id == "SM9"


def test_the_provider_and_attempt_of_the_journal_name_the_event() -> None:
    """A report does not say who sent the message: the attempt journal does."""
    report = report_from_callback({"MessageSid": "SM1", "MessageStatus": "sent"})
    event = report.event("acc_1", "ntf_1", provider="backup", attempt=3)
    assert isinstance(event, SmsSent)
    assert (event.provider, event.attempt) == ("backup", 3)


def test_a_fetched_message_resource_becomes_the_same_report_as_its_callback() -> None:
    """``GET Messages/{Sid}.json`` and the status callback agree."""
    fetched = report_from_resource(
        "SM1", {"status": "undelivered", "error_code": 30003, "error_message": "Unreachable"}
    )
    called_back = report_from_callback(
        {
            "MessageSid": "SM1",
            "MessageStatus": "undelivered",
            "ErrorCode": "30003",
            "ErrorMessage": "Unreachable",
        }
    )
    assert (
        fetched
        == called_back
        == DeliveryReport("SM1", ReportedStatus.UNDELIVERED, 30003, "Unreachable")
    )
    assert fetched.is_final
    assert not report_from_resource("SM1", {"status": "queued"}).is_final


def test_a_report_survives_being_kept_and_a_form_kept_by_an_older_version_is_upgraded() -> None:
    """Kept reports are JSON of our own; rows an older version kept were raw forms."""
    report = DeliveryReport("SM1", ReportedStatus.FAILED, 30008, "Unknown error")
    assert DeliveryReport.from_json(report.to_json()) == report
    assert upgrade_stored_callback(report.to_json()) is None  # already a report
    legacy = (
        '{"MessageSid": "SM1", "MessageStatus": "failed",'
        ' "ErrorCode": "30008", "ErrorMessage": "Unknown error"}'
    )
    upgraded = upgrade_stored_callback(legacy)
    assert upgraded is not None and DeliveryReport.from_json(upgraded) == report
    assert upgrade_stored_callback(downgrade_stored_report(report.to_json())) == report.to_json()
    with pytest.raises(ValueError, match="not a stored delivery report"):
        DeliveryReport.from_json(legacy)
