"""POST /v1/providers/twilio/status: signature checks, unknown ids kept, known ids published."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest
from api_testkit import AUTH_TOKEN, PROBLEM_JSON, StoredEvent, Tenant

from pigeon.bootstrap import Pigeon
from pigeon.domain.delivery import DeliveryReport, ReportedStatus
from pigeon.domain.events import (
    TOPIC_SMS_REQUESTED,
    TOPIC_STATUS,
    SmsDelivered,
    SmsSending,
    SmsSent,
    decode,
)
from pigeon.providers.signature import SIGNATURE_HEADER, compute_signature
from pigeon.store.attempts import AttemptResult, AttemptStart

Events = Callable[[str], list[StoredEvent]]
PATH = "/v1/providers/twilio/status"
FORM = "application/x-www-form-urlencoded"


def _params(
    sid: str = "SM00000000000000000000000000000001", status: str = "delivered"
) -> dict[str, str]:
    return {
        "AccountSid": "AC00000000000000000000000000000000",
        "MessageSid": sid,
        "MessageStatus": status,
        "To": "+14155550123",
    }


async def _post(
    client: httpx.AsyncClient, params: dict[str, str], signature: str | None
) -> httpx.Response:
    headers: dict[bytes, bytes] = {b"content-type": FORM.encode()}
    if signature is not None:
        # latin-1 lets a test send the non-ASCII bytes a forger could put in a header
        headers[SIGNATURE_HEADER.encode()] = signature.encode("latin-1")
    return await client.post(PATH, content=urlencode(params), headers=headers)


def _status_events(events: Events) -> list[object]:
    return [decode(e.value) for e in events(TOPIC_STATUS)]


def test_the_callback_url_is_the_public_url_plus_the_route(pigeon: Pigeon) -> None:
    """Twilio signs the URL it was told to call: the public URL and the callback path."""
    assert pigeon.status_callback_url == "https://pigeon.example.test" + PATH


BAD_SIGNATURES = {
    "missing": lambda url, params: None,
    "empty": lambda url, params: "",
    "garbage": lambda url, params: "not-base64!",
    "wrong-token": lambda url, params: compute_signature("another-token", url, params),
    "wrong-url": lambda url, params: compute_signature(
        AUTH_TOKEN, "http://127.0.0.1:8000" + PATH, params
    ),
    "other-params": lambda url, params: compute_signature(
        AUTH_TOKEN, url, {**params, "MessageStatus": "failed"}
    ),
    "non-ascii": lambda url, params: "sig\u00e9",
}


@pytest.mark.parametrize("make_signature", BAD_SIGNATURES.values(), ids=BAD_SIGNATURES.keys())
async def test_a_callback_without_a_valid_signature_is_forbidden_and_changes_nothing(
    client: httpx.AsyncClient,
    pigeon: Pigeon,
    row_counts: Callable[[], dict[str, int]],
    events: Events,
    make_signature: Callable[[str, dict[str, str]], str | None],
) -> None:
    """A missing, forged or mismatched X-Twilio-Signature is 403; no event, nothing kept."""
    params = _params()
    before = row_counts()

    response = await _post(client, params, make_signature(pigeon.status_callback_url, params))

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 403
    assert "X-Twilio-Signature" in response.json()["detail"]
    assert row_counts() == before
    assert _status_events(events) == []


async def test_a_signed_callback_for_an_unknown_message_is_kept_for_later(
    client: httpx.AsyncClient,
    pigeon: Pigeon,
    query: Callable[..., list[tuple[object, ...]]],
    events: Events,
) -> None:
    """Given no notification has the message id yet, the callback is 200 and kept pending."""
    params = _params(sid="SMunknown")

    response = await _post(
        client, params, compute_signature(AUTH_TOKEN, pigeon.status_callback_url, params)
    )

    assert response.status_code == 200
    rows = query("SELECT provider_message_id, params FROM pending_callbacks")
    assert len(rows) == 1
    assert rows[0][0] == "SMunknown"
    assert isinstance(rows[0][1], str)
    # kept as the provider's report in our words, not as its form
    assert DeliveryReport.from_json(rows[0][1]) == DeliveryReport(
        "SMunknown", ReportedStatus.DELIVERED
    )
    assert _status_events(events) == []


async def _sent_notification(
    client: httpx.AsyncClient,
    tenant: Tenant,
    pigeon: Pigeon,
    events: Events,
    sid: str,
    *,
    finish: bool = True,
) -> str:
    """Accept a notification over the API and journal its attempt through the store."""
    response = await client.post(
        "/v1/notifications",
        json={"channel": "sms", "to": "+14155550123", "body": "hi"},
        headers=tenant.headers,
    )
    notification_id = str(response.json()["id"])
    assert len(events(TOPIC_SMS_REQUESTED)) >= 1

    def sending(starts: list[AttemptStart]) -> list[SmsSending]:
        return [
            SmsSending(
                account_id=tenant.account.id,
                notification_id=s.notification_id,
                attempt=s.attempt,
                provider="twilio",
            )
            for s in starts
        ]

    [start] = await pigeon.store.begin_attempts([(notification_id, "twilio")], sending)
    if finish:
        await _finish(tenant, pigeon, notification_id, start.attempt, sid)
    return notification_id


async def _finish(tenant: Tenant, pigeon: Pigeon, notification_id: str, n: int, sid: str) -> None:
    sent = SmsSent(
        account_id=tenant.account.id,
        notification_id=notification_id,
        attempt=n,
        provider="twilio",
        provider_message_id=sid,
    )
    await pigeon.store.finish_attempts([AttemptResult(notification_id, n, "sent", sid)], [sent])


async def test_a_signed_callback_for_a_known_message_publishes_its_status_event(
    client: httpx.AsyncClient,
    tenant: Tenant,
    pigeon: Pigeon,
    query: Callable[..., list[tuple[object, ...]]],
    events: Events,
) -> None:
    """Given a sent notification, a signed 'delivered' callback appends SmsDelivered for it."""
    notification_id = await _sent_notification(client, tenant, pigeon, events, "SMknown")
    params = _params(sid="SMknown", status="delivered")

    response = await _post(
        client, params, compute_signature(AUTH_TOKEN, pigeon.status_callback_url, params)
    )

    assert response.status_code == 200
    delivered = [e for e in _status_events(events) if isinstance(e, SmsDelivered)]
    assert len(delivered) == 1
    assert delivered[0].notification_id == notification_id
    assert delivered[0].account_id == tenant.account.id
    assert delivered[0].provider_message_id == "SMknown"
    assert query("SELECT COUNT(*) FROM pending_callbacks") == [(0,)]


async def test_an_early_callback_is_applied_once_the_message_id_is_recorded(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon, events: Events
) -> None:
    """When Twilio calls back before the sender commits the id, the event follows the commit."""
    notification_id = await _sent_notification(
        client, tenant, pigeon, events, "SMearly", finish=False
    )
    params = _params(sid="SMearly", status="delivered")
    response = await _post(
        client, params, compute_signature(AUTH_TOKEN, pigeon.status_callback_url, params)
    )
    assert response.status_code == 200
    assert not [e for e in _status_events(events) if isinstance(e, SmsDelivered)]

    await _finish(tenant, pigeon, notification_id, 1, "SMearly")

    delivered = [e for e in _status_events(events) if isinstance(e, SmsDelivered)]
    assert [(e.notification_id, e.provider_message_id) for e in delivered] == [
        (notification_id, "SMearly")
    ]


async def test_an_interim_status_callback_is_acknowledged_without_an_event(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon, events: Events
) -> None:
    """'queued' tells us nothing new: 200, and no status event is appended."""
    await _sent_notification(client, tenant, pigeon, events, "SMq")
    before = _status_events(events)
    params = _params(sid="SMq", status="queued")

    response = await _post(
        client, params, compute_signature(AUTH_TOKEN, pigeon.status_callback_url, params)
    )

    assert response.status_code == 200
    assert _status_events(events) == before
