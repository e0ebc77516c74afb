"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

import re

import httpx
import pytest

from pigeon import __version__


async def test_healthz_answers_ok_with_the_version(client: httpx.AsyncClient) -> None:
    """Liveness needs no key and says which version runs."""
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


async def test_readyz_answers_ready_when_the_store_answers(client: httpx.AsyncClient) -> None:
    """With the store started, readiness is 200 'ready'."""
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_the_openapi_document_lists_every_public_route(client: httpx.AsyncClient) -> None:
    """/openapi.json describes the notification, usage, callback and health routes."""
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Pigeon"
    assert document["info"]["version"] == __version__
    paths = document["paths"]
    assert set(paths) >= {
        "/v1/notifications",
        "/v1/notifications/{notification_id}",
        "/v1/usage",
        "/v1/providers/twilio/status",
        "/healthz",
        "/readyz",
    }
    assert "post" in paths["/v1/notifications"]
    assert "get" in paths["/v1/notifications/{notification_id}"]
    assert "get" in paths["/v1/usage"]
    assert "post" in paths["/v1/providers/twilio/status"]


async def test_the_openapi_request_schema_uses_the_wire_name_from(
    client: httpx.AsyncClient,
) -> None:
    """The send request documents 'from' (not the Python name 'from_') and its required fields."""
    document = (await client.get("/openapi.json")).json()
    schema = document["components"]["schemas"]["SendNotification"]
    assert set(schema["properties"]) == {"channel", "to", "body", "from", "metadata"}
    assert set(schema["required"]) == {"channel", "to", "body"}
    assert schema.get("additionalProperties") is False


async def test_every_route_that_needs_a_key_declares_the_bearer_scheme(
    client: httpx.AsyncClient,
) -> None:
    """/docs offers "Authorize" with an API key, instead of an optional header per route."""
    document = (await client.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    secured = {
        (path, verb)
        for path, ops in document["paths"].items()
        for verb, op in ops.items()
        if {"apiKey": []} in op.get("security", [])
    }
    assert {
        ("/v1/notifications", "post"),
        ("/v1/notifications", "get"),
        ("/v1/notifications/{notification_id}", "get"),
        ("/v1/usage", "get"),
        ("/v1/admin/keys", "get"),
    } <= secured
    assert ("/healthz", "get") not in secured
    for ops in document["paths"].values():
        for op in ops.values():
            names = {p["name"].lower() for p in op.get("parameters", [])}
            assert "authorization" not in names


async def test_statuses_are_documented_as_an_enum(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    statuses = set(schemas["NotificationStatus"]["enum"])
    assert statuses == {
        "accepted",
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "canceled",
    }
    for model in ("NotificationSummary", "NotificationDetail", "TimelineItem"):
        ref = schemas[model]["properties"]["status"]
        assert ref.get("$ref", "").endswith("/NotificationStatus"), (model, ref)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_load_their_assets_from_pigeon_not_a_cdn(
    client: httpx.AsyncClient, page: str
) -> None:
    """Swagger UI and ReDoc work offline: every script and style comes from this API."""
    html = await client.get(page)
    assert html.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html.text)
    assert assets, html.text[:500]
    for url in assets:
        assert url.startswith("/docs-assets/"), url
        asset = await client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 10_000, url


async def test_an_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    """Even the framework's own errors come back as problem+json."""
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    """DELETE on the notifications collection is 405 problem+json."""
    response = await client.delete("/v1/notifications")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Method Not Allowed"


async def test_every_documented_error_is_problem_json_with_an_example_of_its_status(
    client: httpx.AsyncClient,
) -> None:
    """A client generator and a person both see what each error looks like."""
    document = (await client.get("/openapi.json")).json()
    seen = 0
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for code, response in op["responses"].items():
                if not code.startswith(("4", "5")):
                    continue
                content = response.get("content", {})
                assert "application/problem+json" in content, (path, method, code)
                example = content["application/problem+json"].get("example")
                assert example is not None, (path, method, code)
                assert example["status"] == int(code), (path, method, code)
                assert {"type", "title", "status", "detail"} <= set(example)
                seen += 1
    assert seen > 40
