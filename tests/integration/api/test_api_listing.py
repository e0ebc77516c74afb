"""``GET /v1/notifications``: filters, newest first, pages that never repeat or skip (both stacks).

On the embedded stack some of the listed notifications are still in the API's intake
file (not moved by the intake relay yet): the listing shows them too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from api_testkit import Tenant

LIST = "/v1/notifications"


async def _send(
    client: httpx.AsyncClient, tenant: Tenant, to: str, metadata: dict[str, Any] | None = None
) -> str:
    body: dict[str, Any] = {"channel": "sms", "to": to, "body": "hello"}
    if metadata is not None:
        body["metadata"] = metadata
    answer = await client.post(LIST, json=body, headers=tenant.headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def _ids(client: httpx.AsyncClient, tenant: Tenant, **params: object) -> list[str]:
    page = await client.get(LIST, params=params, headers=tenant.headers)
    assert page.status_code == 200, page.text
    return [item["id"] for item in page.json()["items"]]


@pytest.mark.parametrize("move_first", [False, True], ids=["in-intake", "moved"])
async def test_filters_combine_and_the_newest_come_first(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    moved: Callable[[], None],
    move_first: bool,
) -> None:
    a = await _send(client, tenant, "+14155550101", {"order": "42", "shop": "eu"})
    b = await _send(client, tenant, "+14155550102", {"order": "43"})
    c = await _send(client, tenant, "+14155550101", {"order": 42})  # a number, not "42"
    await _send(client, other_tenant, "+14155550101", {"order": "42"})
    if move_first:
        moved()

    assert await _ids(client, tenant) == [c, b, a]
    assert await _ids(client, tenant, to="+14155550101") == [c, a]
    assert await _ids(client, tenant, **{"metadata.order": "42"}) == [a]
    assert await _ids(client, tenant, **{"metadata.order": "42", "metadata.shop": "eu"}) == [a]
    assert await _ids(client, tenant, **{"metadata.shop": "us"}) == []
    assert await _ids(client, tenant, status="accepted") == [c, b, a]
    assert await _ids(client, tenant, status="delivered") == []
    assert await _ids(client, other_tenant, to="+14155550102") == []

    page = (await client.get(LIST, params={"limit": 1}, headers=tenant.headers)).json()
    (item,) = page["items"]
    assert item["id"] == c and item["status"] == "accepted" and item["attempts"] == 0
    assert item["metadata"] == {"order": 42} and "timeline" not in item


async def test_pages_follow_next_without_repeating_or_skipping_while_new_ones_arrive(
    client: httpx.AsyncClient, tenant: Tenant, moved: Callable[[], None]
) -> None:
    sent = [await _send(client, tenant, f"+1415555{i:04d}") for i in range(5)]
    moved()
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get(LIST, params=params, headers=tenant.headers)).json()
        seen += [item["id"] for item in page["items"]]
        if len(seen) == 2:  # a new one arrives between pages: it is newer than the cursor
            await _send(client, tenant, "+14155559999")
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(sent))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"statuss": "sent"}, "statuss"),
        ({"status": "lost"}, "status"),
        ({"to": "12345"}, "to"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-30T10:00:00"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1000"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"metadata.": "x"}, "metadata."),
    ],
)
async def test_a_bad_filter_is_a_problem_naming_it(
    client: httpx.AsyncClient, tenant: Tenant, params: dict[str, str], field: str
) -> None:
    answer = await client.get(LIST, params=params, headers=tenant.headers)
    assert answer.status_code in (400, 422), answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert field in answer.text


async def test_listing_needs_a_key(client: httpx.AsyncClient) -> None:
    assert (await client.get(LIST)).status_code == 401
