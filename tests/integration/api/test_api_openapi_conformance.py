"""Live answers against the live ``/openapi.json``, validated by openapi-core.

A tour of the API on each stack - every route's success and its usual errors -
and each answer checked against what the document says that route answers with
that status: the status is documented, and the body matches its schema. A
client generated from the document can therefore read every answer. The tour
must reach every operation of the document (but the two that are not JSON
request/response routes), so a new route cannot slip past it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from api_testkit import Tenant
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from pigeon.bootstrap import Pigeon

#: operations the tour leaves to other tests: the live stream (real HTTP, e2e) and the
#: provider's form-encoded status callback (tests/integration/api/test_api_status_callbacks)
NOT_TOURED = {("get", "/v1/notifications/stream"), ("post", "/v1/providers/twilio/status")}
SEND = {"channel": "sms", "to": "+14155550100", "body": "tour"}


class Checked:
    """An HTTP client whose every answer is validated against the document."""

    def __init__(self, http: httpx.AsyncClient, document: dict[str, Any]) -> None:
        self.http, self.document = http, document
        # problem+json is JSON: read it as such (openapi-core knows application/json only)
        config = Config(extra_media_type_deserializers={"application/problem+json": json.loads})
        self.spec = OpenAPI.from_dict(document, config=config)
        self.reached: set[tuple[str, str]] = set()

    async def call(
        self, method: str, url: str, *, status: int, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {**kwargs.pop("headers", {})}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = await self.http.request(method, url, headers=headers, **kwargs)
        assert response.status_code == status, (method, url, response.text)
        request = response.request
        parts = urlsplit(str(request.url))
        mock_request = MockRequest(
            "http://test",
            method.lower(),
            parts.path,
            args=dict(httpx.QueryParams(parts.query)),
            headers=dict(request.headers),
            data=request.content or None,
            content_type=request.headers.get("content-type", "application/json"),
        )
        mock_response = MockResponse(
            response.content,
            status_code=response.status_code,
            headers=dict(response.headers),
            content_type=response.headers.get("content-type", "").split(";")[0],
        )
        try:
            self.spec.validate_response(mock_request, mock_response)
        except Exception as exc:  # the validator's own error types: show what failed
            causes = getattr(exc, "__cause__", None)
            raise AssertionError(
                f"{method} {url} -> {response.status_code} does not match the document: "
                f"{exc!r} {causes!r}\n{response.text[:500]}"
            ) from exc
        result = self.spec.unmarshal_request(mock_request)
        if response.is_success and result.errors:  # an accepted request is one it describes
            raise AssertionError(f"{method} {url}: {result.errors}")
        for pattern in self.document["paths"]:  # which operation this was (coverage)
            if _matches(pattern, parts.path):
                self.reached.add((method.lower(), pattern))
        return response


def _matches(pattern: str, path: str) -> bool:
    want, got = pattern.strip("/").split("/"), path.strip("/").split("/")
    return len(want) == len(got) and all(
        w == g or (w.startswith("{") and w.endswith("}")) for w, g in zip(want, got, strict=True)
    )


@pytest.fixture
async def checked(client: httpx.AsyncClient) -> Checked:
    document = (await client.get("/openapi.json")).json()
    return Checked(client, document)


async def test_every_answer_of_a_tour_of_the_api_matches_the_live_document(
    pigeon: Pigeon, tenant: Tenant, checked: Checked
) -> None:
    _, admin = await pigeon.store.create_api_key("ops", admin=True)
    key = tenant.key
    c = checked.call
    await c("get", "/healthz", status=200)
    await c("get", "/readyz", status=200)

    sent = (await c("post", "/v1/notifications", status=202, key=key, json=SEND)).json()
    idem = {"Idempotency-Key": "tour-1"}
    await c("post", "/v1/notifications", status=202, key=key, json=SEND, headers=idem)
    other = {**SEND, "body": "another"}
    await c("post", "/v1/notifications", status=409, key=key, json=other, headers=idem)
    await c("post", "/v1/notifications", status=422, key=key, json={**SEND, "to": "12"})
    await c("post", "/v1/notifications", status=401, json=SEND)
    await c(
        "post",
        "/v1/notifications",
        status=400,
        key=key,
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    await c(
        "post",
        "/v1/notifications:batch",
        status=207,
        key=key,
        json={"notifications": [SEND, {**SEND, "to": "nope"}]},
    )

    await c("get", "/v1/notifications", status=200, key=key, params={"limit": 1})
    await c("get", "/v1/notifications", status=422, key=key, params={"colour": "red"})
    await c("get", f"/v1/notifications/{sent['id']}", status=200, key=key)
    await c("get", "/v1/notifications/ntf_nope", status=404, key=key)
    await c("post", f"/v1/notifications/{sent['id']}/cancel", status=200, key=key)
    await c("post", "/v1/notifications/ntf_nope/cancel", status=404, key=key)

    days = {"from": "2026-11-01", "to": "2026-11-30"}
    await c("get", "/v1/usage", status=200, key=key, params=days)
    await c("get", "/v1/usage", status=422, key=key, params={"from": "2026-11-30", "to": "x"})
    await c("get", "/v1/usage/quota", status=200, key=key)

    hooks = "/v1/webhook-endpoints"  # status webhooks (tests/integration/api/test_api_webhooks)
    hook = (await c("post", hooks, status=201, key=key, json={"url": "https://x.test/h"})).json()
    await c("post", hooks, status=422, key=key, json={"url": "ftp://x.test/h"})
    await c("get", hooks, status=200, key=key)
    await c("get", f"{hooks}/{hook['id']}", status=200, key=key)
    await c("get", f"{hooks}/whe_nope", status=404, key=key)
    await c("post", f"{hooks}/{hook['id']}/rotate-secret", status=200, key=key, json={})
    await c("post", f"{hooks}/{hook['id']}/enable", status=200, key=key)
    await c("get", f"{hooks}/{hook['id']}/deliveries", status=200, key=key)
    since = {"since": "2026-11-01T00:00:00Z"}
    await c("post", f"{hooks}/{hook['id']}/replay", status=202, key=key, params=since)
    await c("delete", f"{hooks}/{hook['id']}", status=204, key=key)

    await c("get", "/v1/admin/dead-letters", status=200, key=admin)
    await c("get", "/v1/admin/dead-letters", status=403, key=key)
    await c("get", "/v1/admin/dead-letters/dl_nope", status=404, key=admin)
    await c("post", "/v1/admin/dead-letters/dl_nope/replay", status=404, key=admin)
    await c("post", "/v1/admin/dead-letters/replay", status=202, key=admin)
    keys = (await c("get", "/v1/admin/keys", status=200, key=admin)).json()
    mine = next(k["id"] for k in keys if k["account"] == "acme")
    rotated = await c("post", f"/v1/admin/keys/{mine}/rotate", status=201, key=admin)
    await c("post", f"/v1/admin/keys/{mine}/revoke", status=409, key=admin)
    new_key = rotated.json()["key"]
    await c("get", "/v1/usage/quota", status=401, key=key)  # the rotated-away key

    await pigeon.store.set_limits("acme", rate_per_second=1, rate_burst=1)
    await c("get", "/v1/usage/quota", status=200, key=new_key)
    await c("get", "/v1/usage/quota", status=429, key=new_key)

    documented = {
        (method, path)
        for path, item in checked.document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    missed = documented - checked.reached - NOT_TOURED
    assert not missed, f"operations the tour does not reach: {sorted(missed)}"
