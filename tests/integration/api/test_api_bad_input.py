"""Bad requests to POST /v1/notifications: problem+json naming the field, nothing stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from api_testkit import PROBLEM_JSON, SMALL_LIMIT, Tenant

VALID: dict[str, Any] = {"channel": "sms", "to": "+14155550123", "body": "hello"}


def _with(**changes: Any) -> dict[str, Any]:
    body = dict(VALID)
    body.update(changes)
    return body


def _without(field: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != field}


#: (request JSON, the field the problem must name)
UNPROCESSABLE = {
    "to-invalid-for-country": (_with(to="+11234567890"), "to"),
    "to-national-form": (_with(to="4155550123"), "to"),
    "to-with-spaces": (_with(to="+1 415 555 0123"), "to"),
    "to-too-long": (_with(to="+1234567890123456"), "to"),
    "to-leading-zero": (_with(to="+04155550123"), "to"),
    "to-not-a-string": (_with(to=14155550123), "to"),
    "to-null": (_with(to=None), "to"),
    "from-invalid": (_with(**{"from": "4155550100"}), "from"),
    "from-letters": (_with(**{"from": "ACME"}), "from"),
    "body-empty": (_with(body=""), "body"),
    "body-whitespace": (_with(body="  \n\t "), "body"),
    "body-1601-chars": (_with(body="a" * 1601), "body"),
    "body-not-a-string": (_with(body=42), "body"),
    "channel-unknown": (_with(channel="email"), "channel"),
    "channel-wrong-case": (_with(channel="SMS"), "channel"),
    "missing-channel": (_without("channel"), "channel"),
    "missing-to": (_without("to"), "to"),
    "missing-body": (_without("body"), "body"),
    "unknown-extra-field": (_with(priority="high"), "priority"),
    "metadata-list": (_with(metadata=[1, 2]), "metadata"),
    "metadata-string": (_with(metadata="order=17"), "metadata"),
    "metadata-over-4kb": (_with(metadata={"blob": "x" * 4096}), "metadata"),
}


@pytest.mark.parametrize(("payload", "field"), UNPROCESSABLE.values(), ids=UNPROCESSABLE.keys())
async def test_an_invalid_field_is_422_problem_json_naming_it_and_nothing_is_stored(
    client: httpx.AsyncClient,
    tenant: Tenant,
    row_counts: Callable[[], dict[str, int]],
    payload: dict[str, Any],
    field: str,
) -> None:
    """Given one wrong field, the answer is 422 problem+json naming it; no row, no event."""
    before = row_counts()

    response = await client.post("/v1/notifications", json=payload, headers=tenant.headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == 422
    assert problem["title"] == "Unprocessable Content"
    assert problem["type"] == "about:blank"
    assert problem["detail"].startswith(f"{field}: ")
    assert [e["field"] for e in problem["errors"]] == [field]
    assert problem["errors"][0]["reason"]
    assert "Value error" not in problem["detail"]
    assert row_counts() == before


async def test_the_python_name_from_underscore_is_not_part_of_the_api(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    """Only 'from' is documented; 'from_' is an unknown field like any other."""
    before = row_counts()

    response = await client.post(
        "/v1/notifications", json=_with(from_="+14155550100"), headers=tenant.headers
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "from_"
    assert row_counts() == before


async def test_every_missing_field_is_named_in_one_answer(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    """An empty object gets one 422 listing channel, to and body as required."""
    before = row_counts()

    response = await client.post("/v1/notifications", json={}, headers=tenant.headers)

    assert response.status_code == 422
    problem = response.json()
    assert {e["field"]: e["reason"] for e in problem["errors"]} == {
        "channel": "is required",
        "to": "is required",
        "body": "is required",
    }
    assert row_counts() == before


async def test_metadata_of_exactly_4kb_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """4,096 bytes of JSON metadata is the maximum, inclusive."""
    metadata = {"blob": "x" * (4096 - len(orjson.dumps({"blob": ""})))}
    assert len(orjson.dumps(metadata)) == 4096
    response = await client.post(
        "/v1/notifications", json=_with(metadata=metadata), headers=tenant.headers
    )
    assert response.status_code == 202


#: (raw body, extra headers, the words the detail must contain)
BAD_REQUESTS = {
    "malformed-json": (b'{"channel": "sms", "to": ', {"content-type": "application/json"}, "JSON"),
    "trailing-garbage": (b'{"channel": "sms"} x', {"content-type": "application/json"}, "JSON"),
    "json-array": (orjson.dumps([VALID]), {"content-type": "application/json"}, "JSON object"),
    "json-string": (b'"hello"', {"content-type": "application/json"}, "JSON object"),
    "json-number": (b"42", {"content-type": "application/json"}, "JSON object"),
    "json-null": (b"null", {"content-type": "application/json"}, "JSON object"),
    "empty-body": (b"", {"content-type": "application/json"}, "JSON object"),
    "no-content-type": (orjson.dumps(VALID), {}, "Content-Type: application/json"),
    "text-plain": (orjson.dumps(VALID), {"content-type": "text/plain"}, "Content-Type"),
    "form-encoded": (
        b"channel=sms&to=%2B14155550123&body=hi",
        {"content-type": "application/x-www-form-urlencoded"},
        "Content-Type",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
async def test_a_body_that_is_not_a_json_object_is_400_problem_json_and_nothing_is_stored(
    client: httpx.AsyncClient,
    tenant: Tenant,
    row_counts: Callable[[], dict[str, int]],
    case: tuple[bytes, dict[str, str], str],
) -> None:
    """Unparseable JSON, a non-object, or a non-JSON content type is a 400 Bad Request."""
    content, headers, words = case
    before = row_counts()

    response = await client.post(
        "/v1/notifications", content=content, headers={**tenant.headers, **headers}
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == 400
    assert problem["title"] == "Bad Request"
    assert words in problem["detail"]
    assert row_counts() == before


async def test_a_body_over_the_limit_by_content_length_is_413(
    small_client: httpx.AsyncClient,
    tenant: Tenant,
    row_counts: Callable[[], dict[str, int]],
) -> None:
    """Given a 1 KB limit, a request declaring a larger Content-Length is refused with 413."""
    before = row_counts()
    payload = orjson.dumps(_with(body="a" * SMALL_LIMIT))
    assert len(payload) > SMALL_LIMIT

    response = await small_client.post(
        "/v1/notifications",
        content=payload,
        headers={**tenant.headers, "content-type": "application/json"},
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == 413
    assert problem["title"] == "Content Too Large"
    assert str(SMALL_LIMIT) in problem["detail"]
    assert row_counts() == before


async def test_a_body_just_under_the_limit_is_accepted(
    small_client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The limit is on bytes over it, not at it: a request of the limit passes."""
    filler = SMALL_LIMIT - len(orjson.dumps(_with(body="")))
    payload = orjson.dumps(_with(body="a" * filler))
    assert len(payload) == SMALL_LIMIT

    response = await small_client.post(
        "/v1/notifications",
        content=payload,
        headers={**tenant.headers, "content-type": "application/json"},
    )

    assert response.status_code == 202


async def _chunks(payload: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


async def test_a_chunked_body_under_the_limit_is_accepted(
    small_client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A body sent without Content-Length (chunked) is read and accepted when small enough."""
    payload = orjson.dumps(_with(body="a" * 500))

    response = await small_client.post(
        "/v1/notifications",
        content=_chunks(payload),
        headers={**tenant.headers, "content-type": "application/json"},
    )

    assert response.status_code == 202


async def test_a_chunked_body_over_the_limit_is_413(
    small_client: httpx.AsyncClient,
    tenant: Tenant,
    row_counts: Callable[[], dict[str, int]],
) -> None:
    """Given a 1 KB limit, a chunked body without Content-Length is cut off with 413."""
    before = row_counts()
    payload = orjson.dumps(_with(body="a" * (SMALL_LIMIT * 4)))

    response = await small_client.post(
        "/v1/notifications",
        content=_chunks(payload),
        headers={**tenant.headers, "content-type": "application/json"},
    )

    assert row_counts() == before
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.status_code == 413


async def test_a_chunked_body_over_the_limit_is_refused_and_nothing_is_stored(
    small_client: httpx.AsyncClient,
    tenant: Tenant,
    row_counts: Callable[[], dict[str, int]],
) -> None:
    """Whatever the status, an oversized chunked body is a 4xx problem and stores nothing."""
    before = row_counts()
    payload = orjson.dumps(_with(body="a" * (SMALL_LIMIT * 4)))

    response = await small_client.post(
        "/v1/notifications",
        content=_chunks(payload),
        headers={**tenant.headers, "content-type": "application/json"},
    )

    assert response.status_code in {400, 413}
    assert response.headers["content-type"] == PROBLEM_JSON
    assert row_counts() == before


async def test_a_chunked_callback_over_the_limit_is_413(
    small_client: httpx.AsyncClient, row_counts: Callable[[], dict[str, int]]
) -> None:
    """On a route that reads its own body, the streaming limit answers 413 before any work."""
    before = row_counts()
    payload = b"MessageSid=SM1&MessageStatus=delivered&Padding=" + b"x" * (SMALL_LIMIT * 2)

    response = await small_client.post(
        "/v1/providers/twilio/status",
        content=_chunks(payload),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON
    assert row_counts() == before
