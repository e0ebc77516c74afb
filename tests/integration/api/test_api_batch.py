"""POST /v1/notifications:batch: each item checked alone, every good one stored together."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from api_testkit import PROBLEM_JSON, StoredEvent, Tenant

from pigeon.domain.events import TOPIC_SMS_REQUESTED, SmsRequested, decode

BATCH = "/v1/notifications:batch"
SMS = {"channel": "sms", "to": "+14155550123", "body": "Your code is 123456"}


def _sms(n: int, **extra: object) -> dict[str, object]:
    return {**SMS, "to": f"+1415555{n:04d}", "body": f"message {n}", **extra}


async def test_a_batch_stores_each_good_item_and_refuses_each_bad_one_alone(
    client: httpx.AsyncClient,
    tenant: Tenant,
    row_counts: Callable[[], dict[str, int]],
    events: Callable[[str], list[StoredEvent]],
) -> None:
    before = row_counts()
    items = [
        _sms(1),
        {**SMS, "to": "not a number"},
        _sms(2, metadata={"order": "A-1"}),
        {**SMS, "channel": "pigeon-post"},
        "not an object",
        {**SMS, "colour": "blue"},
        _sms(3),
    ]
    answer = await client.post(BATCH, json={"notifications": items}, headers=tenant.headers)
    assert answer.status_code == 207
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert (body["accepted"], body["refused"]) == (3, 4)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [202, 422, 202, 422, 400, 422, 202]
    accepted = [r["notification"] for r in results if r["status"] == 202]
    assert [n["to"] for n in accepted] == ["+14155550001", "+14155550002", "+14155550003"]
    assert all(n["status"] == "accepted" and n["id"].startswith("ntf_") for n in accepted)
    assert not any(r["replayed"] for r in results if r["status"] == 202)
    # each refusal is the problem a single send would have answered, naming the item
    bad_number = results[1]["problem"]
    assert bad_number["status"] == 422
    assert bad_number["detail"].startswith("notifications[1]: ")
    assert [e["field"] for e in bad_number["errors"]] == ["to"]
    assert [e["field"] for e in results[3]["problem"]["errors"]] == ["channel"]
    assert "JSON object" in results[4]["problem"]["detail"]
    assert [e["field"] for e in results[5]["problem"]["errors"]] == ["colour"]
    # stored: exactly the three, each with its request event
    after = row_counts()
    assert after["notifications"] - before["notifications"] == 3
    assert after["timeline"] == before["timeline"]  # a first step is its notification's row
    requested = [decode(e.value) for e in events(TOPIC_SMS_REQUESTED)]
    assert all(isinstance(e, SmsRequested) for e in requested)
    ids = sorted(e.notification_id for e in requested if isinstance(e, SmsRequested))
    assert ids == sorted(n["id"] for n in accepted)
    for notification in accepted:
        shown = await client.get(f"/v1/notifications/{notification['id']}", headers=tenant.headers)
        assert shown.status_code == 200
        assert shown.json()["status"] in ("accepted", "queued")
    listed = await client.get("/v1/notifications?metadata.order=A-1", headers=tenant.headers)
    assert [n["id"] for n in listed.json()["items"]] == [accepted[1]["id"]]


async def test_a_retried_batch_gets_the_first_answers_for_keyed_items(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    items = [_sms(1, idempotency_key="b-1"), _sms(2, idempotency_key="b-2")]
    first = await client.post(BATCH, json={"notifications": items}, headers=tenant.headers)
    assert first.status_code == 207
    stored = row_counts()
    again = await client.post(BATCH, json={"notifications": items}, headers=tenant.headers)
    assert again.status_code == 207
    assert [r["notification"] for r in again.json()["results"]] == [
        r["notification"] for r in first.json()["results"]
    ]
    assert [r["replayed"] for r in again.json()["results"]] == [True, True]
    assert row_counts() == stored  # nothing stored twice


async def test_a_batch_item_and_a_single_send_share_idempotency_keys(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    single = await client.post(
        "/v1/notifications", json=_sms(7), headers={**tenant.headers, "Idempotency-Key": "s-7"}
    )
    assert single.status_code == 202
    stored = row_counts()
    items = [_sms(7, idempotency_key="s-7"), _sms(8, idempotency_key="s-7-other")]
    batch = await client.post(BATCH, json={"notifications": items}, headers=tenant.headers)
    first, second = batch.json()["results"]
    assert first["status"] == 202 and first["replayed"] is True
    assert first["notification"] == single.json()
    assert second["status"] == 202 and second["replayed"] is False
    assert row_counts()["notifications"] == stored["notifications"] + 1


async def test_a_key_reused_with_another_body_refuses_that_item_only(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    await client.post(
        BATCH, json={"notifications": [_sms(1, idempotency_key="k")]}, headers=tenant.headers
    )
    stored = row_counts()
    items = [
        _sms(2, idempotency_key="k"),  # another body under a used key
        _sms(3, idempotency_key="dup"),
        _sms(3, idempotency_key="dup"),  # the same item twice: answered like the first
        _sms(4, idempotency_key="dup"),  # the key of an item above, another body
        _sms(5, idempotency_key="has space"),
    ]
    batch = await client.post(BATCH, json={"notifications": items}, headers=tenant.headers)
    results = batch.json()["results"]
    assert [r["status"] for r in results] == [409, 202, 202, 409, 422]
    assert "idempotency_key 'k'" in results[0]["problem"]["detail"]
    assert results[2]["replayed"] is True
    assert results[2]["notification"] == results[1]["notification"]
    assert results[1]["notification"]["id"] in results[3]["problem"]["detail"]
    assert [e["field"] for e in results[4]["problem"]["errors"]] == ["idempotency_key"]
    assert row_counts()["notifications"] == stored["notifications"] + 1


async def test_a_batch_that_is_not_a_batch_is_one_problem_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    before = row_counts()
    for body, status, field in (
        ({"notifications": []}, 422, "notifications"),
        ({"notifications": [SMS] * 1001}, 422, "notifications"),
        ({"notifications": SMS}, 422, "notifications"),
        ({"items": [SMS]}, 422, "items"),
        ([SMS], 400, None),
    ):
        answer = await client.post(BATCH, json=body, headers=tenant.headers)
        assert answer.status_code == status, body if len(str(body)) < 200 else status
        assert answer.headers["Content-Type"] == PROBLEM_JSON
        if field is not None:
            assert field in [e["field"] for e in answer.json()["errors"]]
    unauthenticated = await client.post(BATCH, json={"notifications": [SMS]})
    assert unauthenticated.status_code == 401
    assert row_counts() == before


async def test_a_full_batch_of_1000_fits_the_batch_body_limit(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    """1,000 long items are far over the 64 KB limit of a single send: the route has its own."""
    before = row_counts()
    items = [_sms(n, body=f"{n} " + "x" * 150, metadata={"n": n}) for n in range(1000)]
    answer = await client.post(BATCH, json={"notifications": items}, headers=tenant.headers)
    assert answer.status_code == 207
    assert answer.json()["accepted"] == 1000
    assert row_counts()["notifications"] == before["notifications"] + 1000


async def test_json_only_the_standard_library_reads_gets_the_same_answers_as_before(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    """The batch body is read by orjson; what orjson refuses but Python's json reads (NaN,
    a 70-bit integer, a lone surrogate, UTF-16) is still each item's own problem, and
    broken JSON is still one 422 naming where."""
    before = row_counts()
    items = (
        b'{"channel": "sms", "to": "+14155550001", "body": "ok"},'
        b'{"channel": "sms", "to": "+14155550002", "body": "x", "metadata": {"f": NaN}},'
        b'{"channel": "sms", "to": "+14155550003", "body": "x", '
        b'"metadata": {"n": 1180591620717411303424}},'
        b'{"channel": "sms", "to": "+14155550004", "body": "\\ud800"}'
    )
    body = b'{"notifications": [' + items + b"]}"
    headers = {**tenant.headers, "Content-Type": "application/json"}
    for encoded in (body, body.decode().encode("utf-16")):
        answer = await client.post(BATCH, content=encoded, headers=headers)
        assert answer.status_code == 207
        results = answer.json()["results"]
        assert [r["status"] for r in results] == [202, 422, 422, 422]
        assert "not a JSON number" in results[1]["problem"]["errors"][0]["reason"]
        assert "64 bits" in results[2]["problem"]["errors"][0]["reason"]
        assert "surrogate" in results[3]["problem"]["errors"][0]["reason"]
    broken = await client.post(BATCH, content=b'{"notifications": [', headers=headers)
    assert broken.status_code in {400, 422}
    assert broken.headers["Content-Type"] == PROBLEM_JSON
    assert row_counts()["notifications"] == before["notifications"] + 2
