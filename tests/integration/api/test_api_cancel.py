"""POST /v1/notifications/{id}/cancel: final at once, 409 once a provider may have it."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from api_testkit import PROBLEM_JSON, StoredEvent, Tenant

from pigeon.bootstrap import Pigeon
from pigeon.domain.events import TOPIC_STATUS, SmsCanceled, SmsFailed, decode
from pigeon.services.projector import STATUS_GROUP

SMS = {"channel": "sms", "to": "+14155550123", "body": "Your code is 123456"}


async def _send(client: httpx.AsyncClient, tenant: Tenant) -> str:
    answer = await client.post("/v1/notifications", json=SMS, headers=tenant.headers)
    assert answer.status_code == 202
    return str(answer.json()["id"])


async def test_a_notification_no_provider_has_is_canceled_at_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    events: Callable[[str], list[StoredEvent]],
    query: Callable[..., list[tuple[object, ...]]],
) -> None:
    nid = await _send(client, tenant)
    answer = await client.post(f"/v1/notifications/{nid}/cancel", headers=tenant.headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["id"] == nid and body["status"] == "canceled"
    assert body["timeline"][-1]["status"] == "canceled"
    assert body["timeline"][-1]["detail"] == "canceled by the caller"
    assert body["next_attempt_at"] is None
    shown = await client.get(f"/v1/notifications/{nid}", headers=tenant.headers)
    assert shown.json()["status"] == "canceled"
    # the sender's journal holds attempt 1 as canceled: no sender will open one
    assert query(
        "SELECT attempt, outcome FROM send_attempts WHERE notification_id = :n", n=nid
    ) == [(1, "canceled")]
    # the event is in the log for every consumer (the projector has it already)
    published = [decode(e.value) for e in events(TOPIC_STATUS)]
    assert [type(e) for e in published if e.notification_id == nid] == [SmsCanceled]
    listed = await client.get("/v1/notifications?status=canceled", headers=tenant.headers)
    assert [n["id"] for n in listed.json()["items"]] == [nid]

    again = await client.post(f"/v1/notifications/{nid}/cancel", headers=tenant.headers)
    assert again.status_code == 200
    assert again.json() == shown.json()
    assert len([e for e in events(TOPIC_STATUS) if decode(e.value).notification_id == nid]) == 1


async def test_an_attempt_started_or_a_final_status_is_a_409_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon, moved: Callable[[], None]
) -> None:
    started, failed = await _send(client, tenant), await _send(client, tenant)
    moved()  # into the store, as the workers' intake relay would (embedded stack)
    # the sender opened attempt 1 of one (through its own port), the other failed
    await pigeon.store.begin_attempts([(started, "twilio")], lambda starts: [])
    await pigeon.store.project_status(
        STATUS_GROUP,
        [SmsFailed(account_id=tenant.account.id, notification_id=failed, reason="test")],
    )
    for nid, says in ((started, "already handed to a provider"), (failed, "already failed")):
        before = (await client.get(f"/v1/notifications/{nid}", headers=tenant.headers)).json()
        answer = await client.post(f"/v1/notifications/{nid}/cancel", headers=tenant.headers)
        assert answer.status_code == 409
        assert answer.headers["Content-Type"] == PROBLEM_JSON
        assert says in answer.json()["detail"]
        after = (await client.get(f"/v1/notifications/{nid}", headers=tenant.headers)).json()
        assert after == before


async def test_unknown_and_other_accounts_notifications_are_404(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    nid = await _send(client, tenant)
    for path, headers in (
        (f"/v1/notifications/{nid}/cancel", other_tenant.headers),
        ("/v1/notifications/ntf_nope/cancel", tenant.headers),
        ("/v1/notifications/" + "x" * 100 + "/cancel", tenant.headers),
    ):
        answer = await client.post(path, headers=headers)
        assert answer.status_code == 404
        assert answer.headers["Content-Type"] == PROBLEM_JSON
    assert (await client.post(f"/v1/notifications/{nid}/cancel")).status_code == 401
    shown = await client.get(f"/v1/notifications/{nid}", headers=tenant.headers)
    assert shown.json()["status"] == "accepted"
