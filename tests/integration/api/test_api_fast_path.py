"""The fast path answers the ordinary send exactly as the routes would, and hands the rest on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
from api_testkit import SMALL_LIMIT, Tenant

REQUEST = {"channel": "sms", "to": "+14155550123", "body": "Your code is 1234"}


async def test_an_ordinary_send_is_stored_and_reads_back_as_it_was_answered(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The 202's body and Location lead to the stored notification with the same fields."""
    response = await client.post("/v1/notifications", json=REQUEST, headers=tenant.headers)

    assert response.status_code == 202
    accepted = response.json()
    assert response.headers["location"] == f"/v1/notifications/{accepted['id']}"
    stored = await client.get(response.headers["location"], headers=tenant.headers)
    assert stored.status_code == 200
    assert {k: stored.json()[k] for k in accepted if k != "status"} == {
        k: v for k, v in accepted.items() if k != "status"
    }


async def test_a_repeated_authorization_header_counts_by_its_first_value(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    """Given a bad key first and a good one second, the answer is the framework's 401."""
    before = row_counts()
    headers = [
        ("Authorization", "Bearer pgn_not-a-key"),
        ("Authorization", tenant.headers["Authorization"]),
    ]

    response = await client.post("/v1/notifications", json=REQUEST, headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert row_counts() == before


async def test_a_body_past_the_limit_without_a_length_is_a_413_storing_nothing(
    small_client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    """A chunked body that grows past the limit reaches the size check, not the store."""
    before = row_counts()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"channel": "sms", "to": "+14155550123", "body": "'
        yield b"x" * (SMALL_LIMIT + 10)
        yield b'"}'

    response = await small_client.post(
        "/v1/notifications",
        content=chunks(),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert row_counts() == before
