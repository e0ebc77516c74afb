"""POST and GET /v1/notifications on the real app and store, on both stacks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from api_testkit import StoredEvent, Tenant

from pigeon.domain.events import TOPIC_SMS_REQUESTED, SmsRequested, decode

TO = "+14155550123"
FROM = "+14155550100"


def _request(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"channel": "sms", "to": TO, "body": "Your code is 1234"}
    body.update(overrides)
    return body


async def test_a_valid_request_is_accepted_with_202_and_a_location(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Given a valid SMS request, the API answers 202 with the accepted notification."""
    before = datetime.now(UTC)
    response = await client.post("/v1/notifications", json=_request(), headers=tenant.headers)

    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"id", "status", "channel", "to", "segments", "created_at"}
    assert body["id"].startswith("ntf_")
    assert body["status"] == "accepted"
    assert body["channel"] == "sms"
    assert body["to"] == TO
    assert body["segments"] == 1
    created = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= created <= datetime.now(UTC) + timedelta(seconds=1)
    assert body["created_at"].endswith("Z")
    assert response.headers["location"] == f"/v1/notifications/{body['id']}"


async def test_an_accepted_notification_can_be_read_back_at_its_location(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Following Location shows the notification with a timeline that starts at 'accepted'."""
    sent = await client.post(
        "/v1/notifications", json=_request(metadata={"order": "A-17"}), headers=tenant.headers
    )

    response = await client.get(sent.headers["location"], headers=tenant.headers)

    assert response.status_code == 200
    got = response.json()
    assert got["id"] == sent.json()["id"]
    assert got["status"] in {"accepted", "queued", "sending", "sent", "delivered"}
    assert (got["channel"], got["to"], got["segments"]) == ("sms", TO, 1)
    assert got["metadata"] == {"order": "A-17"}
    assert got["created_at"] == sent.json()["created_at"]
    assert got["attempts"] == 0
    assert got["provider"] is None
    assert got["provider_message_id"] is None
    assert got["last_error"] is None
    assert got["timeline"][0]["status"] == "accepted"
    assert got["timeline"][0]["at"] == sent.json()["created_at"]
    assert got["timeline"][0]["detail"]


async def test_an_accepted_notification_has_its_request_event_in_the_log(
    client: httpx.AsyncClient, tenant: Tenant, events: Callable[[str], list[StoredEvent]]
) -> None:
    """The SmsRequested event is on sms.requested, keyed by recipient, with the message."""
    response = await client.post(
        "/v1/notifications",
        json=_request(**{"from": FROM, "body": "Total: 5€"}),
        headers=tenant.headers,
    )
    notification_id = response.json()["id"]

    messages = events(TOPIC_SMS_REQUESTED)

    assert len(messages) == 1
    assert messages[0].key == TO
    event = decode(messages[0].value)
    assert isinstance(event, SmsRequested)
    assert event.account_id == tenant.account.id
    assert event.notification_id == notification_id
    assert (event.to, event.from_number, event.body) == (TO, FROM, "Total: 5€")
    assert (event.segments, event.encoding) == (1, "GSM-7")


async def test_from_and_metadata_are_stored_with_the_notification(
    client: httpx.AsyncClient,
    tenant: Tenant,
    query: Callable[..., list[tuple[object, ...]]],
) -> None:
    """The sender number and the caller's metadata land in the notifications row."""
    metadata = {"order": 17, "tags": ["otp", "login"], "nested": {"ok": True}}
    response = await client.post(
        "/v1/notifications",
        json=_request(**{"from": FROM, "metadata": metadata}),
        headers=tenant.headers,
    )

    rows = query(
        "SELECT account_id, recipient, from_number, body, metadata, status "
        "FROM notifications WHERE id = :id",
        id=response.json()["id"],
    )
    assert len(rows) == 1
    account_id, recipient, from_number, body, stored_metadata, status = rows[0]
    assert (account_id, recipient, from_number) == (tenant.account.id, TO, FROM)
    assert body == "Your code is 1234"
    assert isinstance(stored_metadata, str)
    assert orjson.loads(stored_metadata) == metadata
    assert status == "accepted"


async def test_a_body_of_exactly_1600_characters_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The maximum body length is inclusive: 1,600 characters are 11 GSM-7 segments."""
    response = await client.post(
        "/v1/notifications", json=_request(body="a" * 1600), headers=tenant.headers
    )
    assert response.status_code == 202
    assert response.json()["segments"] == 11


async def test_a_unicode_body_reports_its_ucs2_segment_count(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """An emoji body of 36 emoji (72 UTF-16 units) is billed as two segments."""
    response = await client.post(
        "/v1/notifications", json=_request(body="\U0001f600" * 36), headers=tenant.headers
    )
    assert response.status_code == 202
    assert response.json()["segments"] == 2


async def test_each_request_is_a_new_notification(
    client: httpx.AsyncClient, tenant: Tenant, events: Callable[[str], list[StoredEvent]]
) -> None:
    """Two identical requests store two notifications and publish two events."""
    first = await client.post("/v1/notifications", json=_request(), headers=tenant.headers)
    second = await client.post("/v1/notifications", json=_request(), headers=tenant.headers)

    assert first.json()["id"] != second.json()["id"]
    assert len(events(TOPIC_SMS_REQUESTED)) == 2
