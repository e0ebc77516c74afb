"""Domain events: the JSON envelope, decoding errors, and routing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypedDict

import orjson
import pytest

from pigeon.domain.events import (
    EVENT_TYPES,
    TOPIC_SMS_REQUESTED,
    TOPIC_STATUS,
    Event,
    SmsAttemptFailed,
    SmsCanceled,
    SmsDelivered,
    SmsFailed,
    SmsRequested,
    SmsSending,
    SmsSent,
    SmsUndelivered,
    SmsWaiting,
    decode,
    encode,
    format_time,
    parse_time,
    route,
    to_envelope,
)
from pigeon.domain.status import NotificationStatus
from pigeon.errors import MalformedEvent, PermanentError

AT = datetime(2026, 11, 26, 16, 43, 21, 123456, tzinfo=UTC)


class _Ids(TypedDict):
    account_id: str
    notification_id: str
    occurred_at: datetime


IDS: _Ids = {"account_id": "acc_1", "notification_id": "ntf_1", "occurred_at": AT}

SAMPLES: dict[str, Event] = {
    "SmsRequested": SmsRequested(
        **IDS,
        to="+14155550123",
        from_number="+14155550100",
        body="Your code is 1234 €",
        segments=1,
        encoding="GSM-7",
    ),
    "SmsSending": SmsSending(**IDS, attempt=1, provider="twilio"),
    "SmsAttemptFailed": SmsAttemptFailed(
        **IDS,
        attempt=2,
        provider="twilio",
        error="HTTP 503",
        error_code=None,
        retry_in_seconds=1.5,
    ),
    "SmsWaiting": SmsWaiting(**IDS, reason="every provider's circuit is open", wait_seconds=12.5),
    "SmsSent": SmsSent(**IDS, attempt=1, provider="twilio", provider_message_id="SM123"),
    "SmsDelivered": SmsDelivered(**IDS, provider_message_id="SM123"),
    "SmsUndelivered": SmsUndelivered(
        **IDS, provider_message_id="SM123", error_code=30003, error="Unreachable handset"
    ),
    "SmsFailed": SmsFailed(**IDS, reason="invalid 'To'", error_code=21211, attempts=1),
    "SmsCanceled": SmsCanceled(**IDS),
}

ENVELOPE_KEYS = {"id", "type", "version", "occurred_at", "account_id", "notification_id", "data"}


def _envelope(**overrides: object) -> dict[str, object]:
    raw = to_envelope(SAMPLES["SmsDelivered"])
    raw.update(overrides)
    return raw


def test_every_event_type_has_a_sample() -> None:
    """The round-trip tests below cover every registered event type."""
    assert set(SAMPLES) == set(EVENT_TYPES)
    assert all(type(event) is EVENT_TYPES[name] for name, event in SAMPLES.items())


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_an_event_survives_encode_then_decode_unchanged(type_name: str) -> None:
    """decode(encode(event)) equals the event, field for field."""
    event = SAMPLES[type_name]
    assert decode(encode(event)) == event


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_decode_accepts_text_as_well_as_bytes(type_name: str) -> None:
    """A payload read as str decodes like the bytes."""
    event = SAMPLES[type_name]
    assert decode(encode(event).decode()) == event


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_the_envelope_has_exactly_the_documented_fields(type_name: str) -> None:
    """id, type, version, occurred_at, account_id, notification_id and data; nothing else."""
    event = SAMPLES[type_name]
    raw = orjson.loads(encode(event))
    assert set(raw) == ENVELOPE_KEYS
    assert raw["id"] == event.event_id
    assert raw["type"] == type_name
    assert raw["version"] == 1
    assert raw["account_id"] == "acc_1"
    assert raw["notification_id"] == "ntf_1"
    assert raw["occurred_at"] == "2026-11-26T16:43:21.123456Z"
    assert not set(raw["data"]) & {"event_id", "account_id", "notification_id", "occurred_at"}


def test_the_data_of_a_request_holds_its_own_fields() -> None:
    """SmsRequested's data carries recipient, sender, body, segments and encoding."""
    assert to_envelope(SAMPLES["SmsRequested"])["data"] == {
        "to": "+14155550123",
        "from_number": "+14155550100",
        "body": "Your code is 1234 €",
        "segments": 1,
        "encoding": "GSM-7",
    }


def test_a_new_event_gets_a_fresh_event_id_and_a_utc_timestamp() -> None:
    """Event ids are 'evt_' + a 26-character ULID, distinct per event."""
    first = SmsDelivered(account_id="a", notification_id="n", provider_message_id="SM1")
    second = SmsDelivered(account_id="a", notification_id="n", provider_message_id="SM1")
    assert first.event_id.startswith("evt_")
    assert len(first.event_id) == 4 + 26
    assert first.event_id != second.event_id
    assert first.occurred_at.tzinfo is not None


def test_format_time_writes_utc_with_a_z_and_parse_time_reads_it_back() -> None:
    """Timestamps round-trip through the envelope format."""
    assert format_time(AT) == "2026-11-26T16:43:21.123456Z"
    assert parse_time(format_time(AT)) == AT


def test_parse_time_treats_a_naive_timestamp_as_utc() -> None:
    """A timestamp without an offset is read as UTC, never as local time."""
    assert parse_time("2026-11-26T16:43:21.123456") == AT


@pytest.mark.parametrize(
    "payload",
    [b"", b"{not json", b'{"type": "SmsSent"', b"\xff\xfe"],
    ids=["empty", "garbage", "truncated", "not-utf8"],
)
def test_decode_rejects_a_payload_that_is_not_json(payload: bytes) -> None:
    """Invalid JSON raises MalformedEvent, not an orjson error."""
    with pytest.raises(MalformedEvent, match="not valid JSON"):
        decode(payload)


@pytest.mark.parametrize("payload", [b"[]", b"42", b'"SmsSent"', b"null"])
def test_decode_rejects_json_that_is_not_an_object(payload: bytes) -> None:
    """The envelope must be a JSON object."""
    with pytest.raises(MalformedEvent, match="must be a JSON object"):
        decode(payload)


@pytest.mark.parametrize("type_value", ["SmsTeleported", "", None, 7, "smsdelivered"])
def test_decode_rejects_an_unknown_event_type(type_value: object) -> None:
    """A type not in EVENT_TYPES (or not a string) is malformed."""
    with pytest.raises(MalformedEvent, match="unknown event type"):
        decode(orjson.dumps(_envelope(type=type_value)))


def test_decode_rejects_an_envelope_without_a_type() -> None:
    """A missing type is an unknown type."""
    raw = _envelope()
    del raw["type"]
    with pytest.raises(MalformedEvent, match="unknown event type"):
        decode(orjson.dumps(raw))


@pytest.mark.parametrize("missing", ["id", "account_id", "notification_id", "occurred_at"])
def test_decode_rejects_an_envelope_missing_a_field(missing: str) -> None:
    """Every envelope field is required."""
    raw = _envelope()
    del raw[missing]
    with pytest.raises(MalformedEvent):
        decode(orjson.dumps(raw))


@pytest.mark.parametrize("data", [None, [], "SM123", 1], ids=["null", "list", "str", "int"])
def test_decode_rejects_data_that_is_not_an_object(data: object) -> None:
    """data must be a JSON object."""
    with pytest.raises(MalformedEvent, match="'data' must be a JSON object"):
        decode(orjson.dumps(_envelope(data=data)))


def test_decode_rejects_an_envelope_without_data() -> None:
    """A missing data object is malformed."""
    raw = _envelope()
    del raw["data"]
    with pytest.raises(MalformedEvent):
        decode(orjson.dumps(raw))


def test_decode_rejects_data_missing_a_required_field() -> None:
    """SmsDelivered without provider_message_id is malformed."""
    with pytest.raises(MalformedEvent):
        decode(orjson.dumps(_envelope(data={})))


def test_decode_rejects_data_with_an_unknown_field() -> None:
    """A field the event class does not have is malformed."""
    with pytest.raises(MalformedEvent):
        decode(orjson.dumps(_envelope(data={"provider_message_id": "SM1", "colour": "red"})))


def test_decode_rejects_data_that_tries_to_set_an_envelope_field() -> None:
    """data cannot smuggle in a second account_id."""
    with pytest.raises(MalformedEvent):
        decode(orjson.dumps(_envelope(data={"provider_message_id": "SM1", "account_id": "x"})))


@pytest.mark.parametrize("occurred_at", ["yesterday", "", 12])
def test_decode_rejects_an_unparseable_timestamp(occurred_at: object) -> None:
    """occurred_at must be ISO 8601."""
    with pytest.raises(MalformedEvent):
        decode(orjson.dumps(_envelope(occurred_at=occurred_at)))


def test_decode_rejects_data_with_a_field_of_the_wrong_type() -> None:
    """A request whose segment count is a string is malformed, not metered."""
    raw = to_envelope(SAMPLES["SmsRequested"])
    raw["data"] = {**raw["data"], "segments": "two"}
    with pytest.raises(MalformedEvent):
        decode(orjson.dumps(raw))


def test_decode_rejects_a_null_account_id() -> None:
    """A null account id is as malformed as a missing one."""
    with pytest.raises(MalformedEvent):
        decode(orjson.dumps(_envelope(account_id=None)))


def test_malformed_event_is_a_permanent_error() -> None:
    """Consumers dead-letter MalformedEvent rather than retrying it."""
    assert issubclass(MalformedEvent, PermanentError)


def test_a_request_is_routed_to_the_request_topic_keyed_by_recipient() -> None:
    """One recipient's messages share a partition, so they stay in order."""
    assert route(SAMPLES["SmsRequested"]) == (TOPIC_SMS_REQUESTED, "+14155550123")


@pytest.mark.parametrize("type_name", sorted(set(EVENT_TYPES) - {"SmsRequested"}))
def test_a_status_event_is_routed_to_the_status_topic_keyed_by_notification(
    type_name: str,
) -> None:
    """One notification's history shares a partition, so it stays in order."""
    assert route(SAMPLES[type_name]) == (TOPIC_STATUS, "ntf_1")


@pytest.mark.parametrize(
    ("type_name", "status"),
    [
        ("SmsRequested", NotificationStatus.QUEUED),
        ("SmsSending", NotificationStatus.SENDING),
        ("SmsAttemptFailed", None),
        ("SmsSent", NotificationStatus.SENT),
        ("SmsDelivered", NotificationStatus.DELIVERED),
        ("SmsUndelivered", NotificationStatus.UNDELIVERED),
        ("SmsFailed", NotificationStatus.FAILED),
        ("SmsCanceled", NotificationStatus.CANCELED),
    ],
)
def test_each_event_type_moves_a_notification_to_its_status(
    type_name: str, status: NotificationStatus | None
) -> None:
    """A failed attempt leaves the status as it is; every other event names one."""
    assert EVENT_TYPES[type_name].status == status


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_every_event_has_a_timeline_line(type_name: str) -> None:
    """Each event explains itself in one non-empty line for the timeline."""
    detail = SAMPLES[type_name].detail()
    assert detail
    assert "\n" not in detail


def test_a_wait_says_why_and_until_when() -> None:
    """The timeline step of a wait names its reason and the next try, in UTC."""
    waiting = SmsWaiting(
        **{**IDS, "occurred_at": datetime(2026, 11, 30, 12, 3, 29, tzinfo=UTC)},
        reason="every provider's circuit is open",
        wait_seconds=12.4,
    )
    assert waiting.detail() == "waiting: every provider's circuit is open, next try 12:03:41 UTC"
    assert waiting.status is None  # no status change: the notification stays where it is
