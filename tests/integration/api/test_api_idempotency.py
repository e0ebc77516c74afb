"""Idempotency-Key on POST /v1/notifications: retries are answered, never doubled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from api_testkit import PROBLEM_JSON, Tenant

SMS = {"channel": "sms", "to": "+14155550123", "body": "Your code is 123456"}


def _with_key(tenant: Tenant, key: str) -> dict[str, str]:
    return {**tenant.headers, "Idempotency-Key": key}


async def test_same_key_same_body_gets_the_first_answer_and_id(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    first = await client.post("/v1/notifications", json=SMS, headers=_with_key(tenant, "k-1"))
    assert first.status_code == 202
    stored = row_counts()
    # the same body with other key order and spacing is the same request
    again = await client.post(
        "/v1/notifications",
        content='{"body": "Your code is 123456", "to": "+14155550123",   "channel": "sms"}',
        headers={**_with_key(tenant, "k-1"), "Content-Type": "application/json"},
    )
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert row_counts() == stored  # nothing new stored


async def test_same_key_other_body_is_a_409_problem_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    first = await client.post("/v1/notifications", json=SMS, headers=_with_key(tenant, "k-2"))
    stored = row_counts()
    other = await client.post(
        "/v1/notifications", json={**SMS, "body": "another"}, headers=_with_key(tenant, "k-2")
    )
    assert other.status_code == 409
    assert other.headers["Content-Type"] == PROBLEM_JSON
    problem = other.json()
    assert "Idempotency-Key 'k-2'" in problem["detail"]
    assert first.json()["id"] in problem["detail"]
    assert row_counts() == stored


async def test_keys_are_per_account(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await client.post("/v1/notifications", json=SMS, headers=_with_key(tenant, "shared"))
    theirs = await client.post(
        "/v1/notifications", json=SMS, headers=_with_key(other_tenant, "shared")
    )
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers


async def test_concurrent_duplicates_make_exactly_one_notification(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    before = row_counts()
    answers = await asyncio.gather(
        *(
            client.post("/v1/notifications", json=SMS, headers=_with_key(tenant, "burst"))
            for _ in range(20)
        )
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
    assert row_counts()["notifications"] == before["notifications"] + 1


async def test_a_bad_key_is_a_422_problem_naming_the_header(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    before = row_counts()
    for bad in ("x" * 256, "has space", ""):
        answer = await client.post("/v1/notifications", json=SMS, headers=_with_key(tenant, bad))
        assert answer.status_code == 422, bad
        assert answer.headers["Content-Type"] == PROBLEM_JSON
        assert answer.json()["errors"][0]["field"] == "Idempotency-Key"
    assert row_counts() == before


async def test_without_a_key_each_request_is_new(client: httpx.AsyncClient, tenant: Tenant) -> None:
    one = await client.post("/v1/notifications", json=SMS, headers=tenant.headers)
    two = await client.post("/v1/notifications", json=SMS, headers=tenant.headers)
    assert one.json()["id"] != two.json()["id"]
