"""``/v1/webhook-endpoints``: create, list, get, delete, rotate, enable, deliveries, replay."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from api_testkit import PROBLEM_JSON, Tenant
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from pigeon.bootstrap import Pigeon
from pigeon.domain.events import utcnow
from pigeon.services.webhook_dispatcher import signed_headers
from pigeon.store.webhook_rows import MAX_ENDPOINTS, AttemptResult, NewDelivery

PATH = "/v1/webhook-endpoints"
HOOK = {"url": "https://example.com/hooks/pigeon", "description": "orders"}
Query = Callable[..., list[tuple[object, ...]]]


async def _create(client: httpx.AsyncClient, tenant: Tenant, **body: object) -> dict[str, object]:
    answer = await client.post(PATH, json={**HOOK, **body}, headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    created: dict[str, object] = answer.json()
    return created


async def test_an_endpoint_is_created_with_its_secret_shown_once_then_listed_and_read_without(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """201 with a whsec_ secret; list and get show the endpoint but never the secret."""
    created = await _create(client, tenant, event_types=["SmsDelivered", "SmsFailed"])
    assert str(created["id"]).startswith("whe_")
    assert str(created["secret"]).startswith("whsec_")
    assert created["event_types"] == ["SmsDelivered", "SmsFailed"]
    assert created["enabled"] is True and created["disabled_reason"] is None

    listed = await client.get(PATH, headers=tenant.headers)
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()] == [created["id"]]
    shown = await client.get(f"{PATH}/{created['id']}", headers=tenant.headers)
    assert shown.status_code == 200
    assert "secret" not in shown.json() and "secret" not in listed.json()[0]
    assert shown.json() == {k: v for k, v in created.items() if k != "secret"}


async def test_a_deleted_endpoint_is_gone_and_its_deliveries_with_it(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon, query: Query
) -> None:
    """DELETE answers 204; afterwards the endpoint is a 404 and its log is deleted too."""
    created = await _create(client, tenant)
    await pigeon.store.webhooks.enqueue(
        [NewDelivery(str(created["id"]), "evt_1", "ntf_1", "SmsSent", "{}")]
    )
    deleted = await client.delete(f"{PATH}/{created['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"{PATH}/{created['id']}", headers=tenant.headers)).status_code == 404
    assert (
        await client.delete(f"{PATH}/{created['id']}", headers=tenant.headers)
    ).status_code == 404
    assert query("SELECT COUNT(*) FROM webhook_deliveries") == [(0,)]
    assert (await client.get(PATH, headers=tenant.headers)).json() == []


@pytest.mark.parametrize(
    "case",
    [
        ({"url": "ftp://example.com/x"}, "url", "http:// or https://"),
        ({"url": "https:///x"}, "url", "no host"),
        ({"url": "https://example.com/" + "a" * 2000}, "url", "at most 2000"),
        (
            {"url": "https://example.com", "event_types": ["SmsExploded"]},
            "event_types",
            "SmsExploded",
        ),
        ({"url": "https://example.com", "event_types": "SmsSent"}, "event_types", "list"),
        ({"url": "https://example.com", "colour": "red"}, "colour", "Extra"),
        ({}, "url", "required"),
    ],
)
async def test_bad_input_is_a_422_problem_naming_the_field_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    query: Query,
    case: tuple[dict[str, object], str, str],
) -> None:
    """Each refusal says which field and why; no endpoint row is written."""
    body, field, words = case
    answer = await client.post(PATH, json=body, headers=tenant.headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    problem = answer.json()
    assert words in problem["detail"]
    assert problem["errors"][0]["field"] == field
    assert query("SELECT COUNT(*) FROM webhook_endpoints") == [(0,)]


async def test_another_accounts_endpoint_is_a_404_for_every_route(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """globex sees none of acme's endpoints and can change none of them."""
    created = await _create(client, tenant)
    one = f"{PATH}/{created['id']}"
    assert (await client.get(PATH, headers=other_tenant.headers)).json() == []
    for method, path in [
        ("GET", one),
        ("DELETE", one),
        ("POST", f"{one}/rotate-secret"),
        ("POST", f"{one}/enable"),
        ("GET", f"{one}/deliveries"),
        ("POST", f"{one}/replay?since=2026-01-01T00:00:00Z"),
    ]:
        answer = await client.request(method, path, headers=other_tenant.headers)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.headers["content-type"] == PROBLEM_JSON
    assert (await client.get(one, headers=tenant.headers)).status_code == 200


async def test_an_account_has_at_most_the_limit_of_endpoints(
    client: httpx.AsyncClient, tenant: Tenant, query: Query
) -> None:
    """The one past the limit is a 409 problem, and is not stored."""
    for _ in range(MAX_ENDPOINTS):
        await _create(client, tenant)
    answer = await client.post(PATH, json=HOOK, headers=tenant.headers)
    assert answer.status_code == 409 and "delete one first" in answer.json()["detail"]
    assert query("SELECT COUNT(*) FROM webhook_endpoints") == [(MAX_ENDPOINTS,)]


async def test_a_rotation_gives_a_new_secret_and_keeps_the_old_one_for_its_grace_period(
    client: httpx.AsyncClient, tenant: Tenant, query: Query
) -> None:
    """The new secret is shown once; the old one signs until the grace period ends."""
    created = await _create(client, tenant)
    rotated = await client.post(
        f"{PATH}/{created['id']}/rotate-secret", json={"grace_hours": 2}, headers=tenant.headers
    )
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert str(body["secret"]).startswith("whsec_") and body["secret"] != created["secret"]
    assert body["previous_secret_expires_at"] is not None
    assert query("SELECT secret, previous_secret FROM webhook_endpoints") == [
        (body["secret"], created["secret"])
    ]
    without_grace = await client.post(
        f"{PATH}/{created['id']}/rotate-secret", json={"grace_hours": 0}, headers=tenant.headers
    )
    assert without_grace.json()["previous_secret_expires_at"] is None
    bad = await client.post(
        f"{PATH}/{created['id']}/rotate-secret", json={"grace_hours": -1}, headers=tenant.headers
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "grace_hours"
    assert query("SELECT secret FROM webhook_endpoints") == [(without_grace.json()["secret"],)]


async def test_the_delivery_log_lists_newest_first_and_a_replay_requeues_since_a_moment(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon, query: Query
) -> None:
    """Delivered ones go back to pending with a fresh budget; the count is the answer."""
    created = await _create(client, tenant)
    endpoint = str(created["id"])
    webhooks = pigeon.store.webhooks
    await webhooks.enqueue(
        [NewDelivery(endpoint, f"evt_{i}", "ntf_1", "SmsSent", f'{{"n": {i}}}') for i in range(3)]
    )
    claimed = await webhooks.claim_due(utcnow(), 10, timedelta(seconds=30))
    assert len(claimed) == 1  # one notification: only its oldest delivery is due
    await webhooks.finish(
        [AttemptResult(claimed[0].seq, endpoint, True, status_code=204)],
        utcnow(),
        timedelta(hours=1),
    )
    log = await client.get(f"{PATH}/{endpoint}/deliveries", headers=tenant.headers)
    assert log.status_code == 200
    assert [d["payload"] for d in log.json()] == [{"n": 2}, {"n": 1}, {"n": 0}]
    assert [d["state"] for d in log.json()] == ["pending", "pending", "delivered"]
    delivered = await client.get(
        f"{PATH}/{endpoint}/deliveries?state=delivered&limit=5", headers=tenant.headers
    )
    assert [(d["attempts"], d["last_status_code"]) for d in delivered.json()] == [(1, 204)]

    replayed = await client.post(
        f"{PATH}/{endpoint}/replay",
        params={"since": (utcnow() - timedelta(minutes=5)).isoformat()},
        headers=tenant.headers,
    )
    assert replayed.status_code == 202 and replayed.json() == {"requeued": 3}
    assert (
        query("SELECT state, attempts FROM webhook_deliveries ORDER BY seq") == [("pending", 0)] * 3
    )
    later = await client.post(
        f"{PATH}/{endpoint}/replay", params={"since": "2999-01-01T00:00:00"}, headers=tenant.headers
    )
    assert later.json() == {"requeued": 0}
    missing = await client.post(f"{PATH}/{endpoint}/replay", headers=tenant.headers)
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "since"


async def test_a_disabled_endpoint_is_enabled_again_with_its_reason_cleared(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon
) -> None:
    """A 410 disables it with the reason visible; enable clears it and its deliveries go."""
    created = await _create(client, tenant)
    endpoint = str(created["id"])
    webhooks = pigeon.store.webhooks
    await webhooks.enqueue([NewDelivery(endpoint, "evt_1", "ntf_1", "SmsSent", "{}")])
    [due] = await webhooks.claim_due(utcnow(), 10, timedelta(seconds=30))
    disabled = await webhooks.finish(
        [AttemptResult(due.seq, endpoint, False, status_code=410, error="HTTP 410", gone=True)],
        utcnow(),
        timedelta(hours=1),
    )
    assert disabled == [(endpoint, "the endpoint answered 410 Gone")]
    shown = (await client.get(f"{PATH}/{endpoint}", headers=tenant.headers)).json()
    assert shown["enabled"] is False
    assert shown["disabled_reason"] == "the endpoint answered 410 Gone"
    assert await webhooks.next_due() is None  # it waits for the endpoint, not for a time
    assert await webhooks.claim_due(utcnow(), 10, timedelta(seconds=30)) == []

    enabled = await client.post(f"{PATH}/{endpoint}/enable", headers=tenant.headers)
    assert enabled.status_code == 200
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None
    assert [d.seq for d in await webhooks.claim_due(utcnow(), 10, timedelta(seconds=30))] == [
        due.seq
    ]


async def test_an_endpoint_failing_longer_than_the_limit_is_disabled_with_the_last_error(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon
) -> None:
    """failing_since is set on the first failure; past the limit the endpoint is disabled."""
    endpoint = str((await _create(client, tenant))["id"])
    webhooks = pigeon.store.webhooks
    await webhooks.enqueue([NewDelivery(endpoint, "evt_1", "ntf_1", "SmsSent", "{}")])
    start = utcnow()
    [due] = await webhooks.claim_due(start, 10, timedelta(seconds=30))
    again = start + timedelta(seconds=1)
    failure = AttemptResult(due.seq, endpoint, False, 500, "HTTP 500: down", again)
    assert await webhooks.finish([failure], start, timedelta(hours=1)) == []
    shown = (await client.get(f"{PATH}/{endpoint}", headers=tenant.headers)).json()
    assert shown["enabled"] is True and shown["failing_since"] is not None

    disabled = await webhooks.finish([failure], start + timedelta(hours=2), timedelta(hours=1))
    assert [e for e, _ in disabled] == [endpoint]
    shown = (await client.get(f"{PATH}/{endpoint}", headers=tenant.headers)).json()
    assert shown["enabled"] is False
    assert "every attempt failed since" in shown["disabled_reason"]
    assert "HTTP 500: down" in shown["disabled_reason"]


async def test_during_a_grace_period_deliveries_verify_with_the_old_and_the_new_secret(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon
) -> None:
    """A claimed delivery carries both keys while the grace lasts; without grace, only the new."""
    created = await _create(client, tenant)
    endpoint = str(created["id"])
    path = f"{PATH}/{endpoint}/rotate-secret"
    rotated = (await client.post(path, json={"grace_hours": 1}, headers=tenant.headers)).json()
    webhooks = pigeon.store.webhooks
    await webhooks.enqueue([NewDelivery(endpoint, "evt_1", "ntf_1", "SmsSent", '{"a": 1}')])
    [due] = await webhooks.claim_due(utcnow(), 10, timedelta(seconds=30))
    headers = signed_headers(due, int(time.time()))
    for secret in (rotated["secret"], created["secret"]):
        assert Webhook(str(secret)).verify(due.payload, headers) == {"a": 1}

    await client.post(path, json={"grace_hours": 0}, headers=tenant.headers)
    await webhooks.enqueue([NewDelivery(endpoint, "evt_2", "ntf_2", "SmsSent", '{"a": 2}')])
    [due] = await webhooks.claim_due(utcnow(), 10, timedelta(seconds=30))
    headers = signed_headers(due, int(time.time()))
    assert len(headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(str(rotated["secret"])).verify(due.payload, headers)


async def test_retention_deletes_finished_deliveries_past_the_cutoff_and_keeps_pending_ones(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon, query: Query
) -> None:
    """Delivered ones made before the cutoff go, in chunks; pending ones stay however old."""
    endpoint = str((await _create(client, tenant))["id"])
    webhooks = pigeon.store.webhooks
    await webhooks.enqueue(
        [NewDelivery(endpoint, f"evt_{i}", f"ntf_{i}", "SmsSent", "{}") for i in range(3)]
    )
    claimed = await webhooks.claim_due(utcnow(), 2, timedelta(seconds=30))
    done = [AttemptResult(d.seq, endpoint, True, status_code=204) for d in claimed]
    await webhooks.finish(done, utcnow(), timedelta(hours=1))

    assert await webhooks.purge_deliveries(utcnow() - timedelta(hours=1), 10) == 0
    assert await webhooks.purge_deliveries(utcnow() + timedelta(seconds=1), 1) == 1
    assert await webhooks.purge_deliveries(utcnow() + timedelta(seconds=1), 10) == 1
    assert query("SELECT state FROM webhook_deliveries") == [("pending",)]


async def test_one_flush_of_mixed_outcomes_records_each_delivery_as_its_attempt_ended(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon, query: Query
) -> None:
    """Successes are recorded together (one statement per status code), the rest one by one:
    each row gets its own state, attempts, status code, error and next time."""
    endpoint = str((await _create(client, tenant))["id"])
    webhooks = pigeon.store.webhooks
    await webhooks.enqueue(
        [NewDelivery(endpoint, f"evt_{i}", f"ntf_{i}", "SmsSent", "{}") for i in range(6)]
    )
    due = await webhooks.claim_due(utcnow(), 10, timedelta(seconds=30))
    assert len(due) == 6
    now = utcnow()
    retry_at = now + timedelta(minutes=5)
    seq = [d.seq for d in due]
    await webhooks.finish(
        [
            AttemptResult(seq[0], endpoint, True, status_code=200),
            AttemptResult(seq[1], endpoint, True, status_code=204),
            AttemptResult(seq[2], endpoint, True, status_code=200),
            AttemptResult(seq[3], endpoint, False, 503, "HTTP 503", next_attempt_at=retry_at),
            AttemptResult(seq[4], endpoint, False, 400, "HTTP 400"),  # no attempt left
            AttemptResult(seq[5], endpoint, False, next_attempt_at=retry_at, counted=False),
        ],
        now,
        timedelta(hours=1),
    )
    rows = query(
        "SELECT state, attempts, last_status_code, last_error, next_attempt_at IS NULL,"
        " delivered_at IS NULL FROM webhook_deliveries ORDER BY seq"
    )
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("delivered", 1, 200, None),
        ("delivered", 1, 204, None),
        ("delivered", 1, 200, None),
        ("pending", 1, 503, "HTTP 503"),
        ("failed", 1, 400, "HTTP 400"),
        ("pending", 0, None, None),  # put off by the breaker: not an attempt
    ]
    assert [(bool(r[4]), bool(r[5])) for r in rows] == [
        (True, False),
        (True, False),
        (True, False),
        (False, True),
        (True, True),
        (False, True),
    ]
    # the one put off and the one to retry come due again at their time, not before
    assert await webhooks.claim_due(utcnow(), 10, timedelta(seconds=30)) == []
    later = await webhooks.claim_due(retry_at + timedelta(seconds=1), 10, timedelta(seconds=30))
    assert sorted(d.seq for d in later) == [seq[3], seq[5]]
