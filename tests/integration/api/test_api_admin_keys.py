"""``/v1/admin/keys``: list, revoke and rotate API keys with an admin key (both stacks)."""

from __future__ import annotations

import httpx
import pytest
from api_testkit import Tenant

from pigeon.bootstrap import Pigeon

KEYS = "/v1/admin/keys"


@pytest.fixture
async def admin(pigeon: Pigeon) -> Tenant:
    account, key = await pigeon.store.create_api_key("ops", admin=True)
    return Tenant(account, key)


async def _key_id(client: httpx.AsyncClient, admin: Tenant, account: str) -> str:
    listed = await client.get(KEYS, params={"account": account}, headers=admin.headers)
    assert listed.status_code == 200
    (key,) = listed.json()
    return str(key["id"])


async def test_an_admin_lists_keys_without_the_keys_themselves(
    client: httpx.AsyncClient, admin: Tenant, tenant: Tenant
) -> None:
    listed = await client.get(KEYS, headers=admin.headers)
    assert listed.status_code == 200
    body = listed.json()
    assert {(k["account"], k["admin"], k["active"]) for k in body} == {
        ("ops", True, True),
        ("acme", False, True),
    }
    assert tenant.key not in listed.text and admin.key not in listed.text
    assert {k["prefix"] for k in body} == {tenant.key[:8], admin.key[:8]}


async def test_a_revoked_key_is_refused_on_its_next_request(
    client: httpx.AsyncClient, admin: Tenant, tenant: Tenant
) -> None:
    assert (
        await client.get("/v1/usage?from=2026-11-01&to=2026-11-02", headers=tenant.headers)
    ).status_code == 200
    key_id = await _key_id(client, admin, "acme")
    revoked = await client.post(f"{KEYS}/{key_id}/revoke", headers=admin.headers)
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False
    refused = await client.get("/v1/usage?from=2026-11-01&to=2026-11-02", headers=tenant.headers)
    assert refused.status_code == 401
    again = await client.post(f"{KEYS}/{key_id}/revoke", headers=admin.headers)
    assert again.status_code == 409
    assert again.headers["Content-Type"] == "application/problem+json"
    assert "already revoked" in again.json()["detail"]


async def test_a_rotated_key_is_shown_once_and_works_and_the_old_one_does_not(
    client: httpx.AsyncClient, admin: Tenant, tenant: Tenant
) -> None:
    key_id = await _key_id(client, admin, "acme")
    rotated = await client.post(f"{KEYS}/{key_id}/rotate", headers=admin.headers)
    assert rotated.status_code == 201
    body = rotated.json()
    assert body["revoked"]["id"] == key_id and body["revoked"]["active"] is False
    new = {"Authorization": f"Bearer {body['key']}"}
    usage = "/v1/usage?from=2026-11-01&to=2026-11-02"
    assert (await client.get(usage, headers=new)).status_code == 200
    assert (await client.get(usage, headers=tenant.headers)).status_code == 401


async def test_only_an_admin_key_manages_keys_and_unknown_ids_are_404(
    client: httpx.AsyncClient, admin: Tenant, tenant: Tenant
) -> None:
    denied = await client.get(KEYS, headers=tenant.headers)
    assert denied.status_code == 403
    assert denied.headers["Content-Type"] == "application/problem+json"
    assert (await client.get(KEYS)).status_code == 401
    key_id = await _key_id(client, admin, "acme")
    assert (await client.post(f"{KEYS}/{key_id}/revoke", headers=tenant.headers)).status_code == 403
    for verb in ("revoke", "rotate"):
        missing = await client.post(f"{KEYS}/key_nope/{verb}", headers=admin.headers)
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/problem+json"
    # the tenant's key still works: nothing was revoked by the refused requests
    usage = "/v1/usage?from=2026-11-01&to=2026-11-02"
    assert (await client.get(usage, headers=tenant.headers)).status_code == 200
