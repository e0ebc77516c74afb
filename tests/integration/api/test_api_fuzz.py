"""Generated requests to every route of the live OpenAPI document, on both stacks.

The guarantee under test: no input makes Pigeon answer 5xx; every error is
problem+json with a status the route documents; a rejected request stores
nothing; an accepted notification round-trips (read back, event envelope,
provider form encoding) exactly as sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from api_testkit import AUTH_TOKEN, PROBLEM_JSON, StoredEvent, Tenant
from hypothesis import event, given
from hypothesis import strategies as st
from openapi_fuzz import Document, FuzzRequest, Keys, operations, requests, usually
from tests.fuzzing import TIMEOUT, scaled

from pigeon.api.app import TWILIO_STATUS_PATH
from pigeon.bootstrap import Pigeon
from pigeon.domain.events import SmsRequested, decode


@pytest.fixture
async def admin(pigeon: Pigeon) -> Tenant:
    """An admin key (the dead-letter routes)."""
    account, key = await pigeon.store.create_api_key("ops", admin=True)
    return Tenant(account, key)


@pytest.fixture
async def openapi(client: httpx.AsyncClient) -> Document:
    """The OpenAPI document the running API serves."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return Document(response.json())


def _send(client: httpx.AsyncClient, request: FuzzRequest) -> Any:
    return client.request(
        request.method, request.url, headers=request.headers, content=request.content
    )


def _check_answer(request: FuzzRequest, response: httpx.Response) -> None:
    status = response.status_code
    assert status < 500, (status, response.text)
    assert status in request.operation.documented, (request.operation.name, status, response.text)
    if status >= 400:
        assert response.headers["content-type"] == PROBLEM_JSON, response.headers
        problem = response.json()
        assert problem["status"] == status
        assert isinstance(problem["detail"], str) and problem["detail"]


async def _check_round_trip(
    client: httpx.AsyncClient,
    tenant_headers: dict[str, str],
    request: FuzzRequest,
    response: httpx.Response,
    events: Callable[[str], list[StoredEvent]],
) -> None:
    sent = json.loads(request.content or b"")
    read = await client.get(response.headers["Location"], headers=tenant_headers)
    if read.status_code == 404:  # accepted for the admin account, read with the tenant's key
        return
    assert read.status_code == 200, read.text
    assert read.json()["metadata"] == (sent.get("metadata") or {})
    stored = [decode(e.value) for e in events("sms.requested")]
    mine = [e for e in stored if e.notification_id == response.json()["id"]]
    assert len(mine) == 1
    event = mine[0]
    assert isinstance(event, SmsRequested)
    assert event.body == sent["body"]
    # what the Twilio adapter posts: the form must encode
    urlencode({"To": event.to, "Body": event.body}, encoding="utf-8", errors="strict")


@dataclass(frozen=True)
class Surface:
    """The API under test and what the fuzz test needs to judge its answers."""

    client: httpx.AsyncClient
    tenant: Tenant
    keys: Keys
    openapi: Document
    callback_url: str
    row_counts: Callable[[], dict[str, int]]
    events: Callable[[str], list[StoredEvent]]


@pytest.fixture
def surface(  # noqa: PLR0917 - pytest passes fixtures by position
    client: httpx.AsyncClient,
    pigeon: Pigeon,
    tenant: Tenant,
    admin: Tenant,
    openapi: Document,
    row_counts: Callable[[], dict[str, int]],
    events: Callable[[str], list[StoredEvent]],
) -> Surface:
    """The running API on this stack, its keys, its OpenAPI document and its tables."""
    return Surface(
        client=client,
        tenant=tenant,
        keys=Keys(tenant=tenant.key, admin=admin.key),
        openapi=openapi,
        callback_url=pigeon.status_callback_url,
        row_counts=row_counts,
        events=events,
    )


@pytest.mark.timeout(TIMEOUT)
@scaled(150)
@given(data=st.data())
async def test_no_generated_request_gets_a_5xx_or_an_undocumented_status_or_stores_on_rejection(
    surface: Surface, data: st.DataObject
) -> None:
    """Any request to any route: < 500, documented status, problem+json, no write if rejected."""
    ops = operations(surface.openapi)
    send = [op for op in ops if op.name == "POST /v1/notifications"]
    # over a quarter of the requests send a notification: the route with the richest input
    op = data.draw(usually(st.sampled_from(ops), st.sampled_from(send)), label="operation")
    request = data.draw(
        requests(
            op,
            document=surface.openapi,
            keys=surface.keys,
            callback_url=surface.callback_url,
            callback_token=AUTH_TOKEN,
        ),
        label="request",
    )
    before = surface.row_counts()

    response = await _send(surface.client, request)

    event(f"{op.name} -> {response.status_code}")
    _check_answer(request, response)
    if response.status_code >= 400:
        assert surface.row_counts() == before, (request, response.text)
    if op.path == "/v1/notifications" and response.status_code == 202:
        await _check_round_trip(
            surface.client, surface.tenant.headers, request, response, surface.events
        )


async def test_every_route_of_the_live_openapi_document_is_generated(
    openapi: Document,
) -> None:
    """The generator covers each operation, the admin and callback routes among them."""
    names = {op.name for op in operations(openapi)}

    assert f"POST {TWILIO_STATUS_PATH}" in names
    assert "POST /v1/admin/dead-letters/{dead_letter_id}/replay" in names
    assert "POST /v1/notifications" in names
    assert len(names) >= 10
