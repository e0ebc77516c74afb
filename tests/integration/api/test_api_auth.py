"""Authentication and tenancy: API keys, 401s and cross-account 404s."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from api_testkit import Tenant

PROBLEM = "application/problem+json"
REQUEST = {"channel": "sms", "to": "+14155550123", "body": "hi"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Token pgn_whatever"},
        {"Authorization": "Bearer pgn_not-a-key-we-issued"},
    ],
    ids=["missing", "empty", "scheme-only", "blank-key", "basic", "token", "unknown-key"],
)
async def test_a_request_without_a_valid_bearer_key_is_unauthorized(
    client: httpx.AsyncClient,
    tenant: Tenant,
    row_counts: Callable[[], dict[str, int]],
    headers: dict[str, str],
) -> None:
    """Missing header, other schemes and unknown keys all get 401 with WWW-Authenticate."""
    before = row_counts()

    response = await client.post("/v1/notifications", json=REQUEST, headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    problem = response.json()
    assert problem["status"] == 401
    assert problem["title"] == "Unauthorized"
    assert "Bearer" in problem["detail"] or "key" in problem["detail"]
    assert row_counts() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/notifications/ntf_anything"),
        ("GET", "/v1/usage?from=2026-01-01&to=2026-01-02"),
    ],
)
async def test_every_account_route_requires_a_key(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    """Reading notifications and usage is as protected as sending."""
    response = await client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_the_bearer_scheme_is_case_insensitive(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """'bearer <key>' is as good as 'Bearer <key>' (RFC 7235 schemes are case-insensitive)."""
    response = await client.post(
        "/v1/notifications", json=REQUEST, headers={"Authorization": f"bearer {tenant.key}"}
    )
    assert response.status_code == 202


async def test_another_accounts_notification_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Given acme's notification, globex asking for it gets 404, as if it did not exist."""
    sent = await client.post("/v1/notifications", json=REQUEST, headers=tenant.headers)

    response = await client.get(sent.headers["location"], headers=other_tenant.headers)

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 404
    assert sent.json()["id"] in response.json()["detail"]
    assert (await client.get(sent.headers["location"], headers=tenant.headers)).status_code == 200


async def test_an_unknown_notification_id_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A well-formed id that was never issued answers 404 problem+json."""
    response = await client.get(
        "/v1/notifications/ntf_01ZZZZZZZZZZZZZZZZZZZZZZZZ", headers=tenant.headers
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["title"] == "Not Found"
