"""Inputs the fuzzers found (or that are like them), pinned so they are replayed on every run.

Each one answered 500 before: a JSON value we could parse but not encode in an
event, store on PostgreSQL, or send in the provider's form.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import orjson
from api_testkit import AUTH_TOKEN, PROBLEM_JSON, Tenant

from pigeon.api.app import TWILIO_STATUS_PATH
from pigeon.bootstrap import Pigeon
from pigeon.providers.signature import compute_signature

HEAD = b'{"channel": "sms", "to": "+14155550123", '


def _with(fields: bytes) -> bytes:
    """A valid request body with ``fields`` (raw JSON members) added after its body."""
    return HEAD + b'"body": "x", ' + fields + b"}"


#: raw JSON request bodies and the field the 422 problem must name
UNSENDABLE = {
    "metadata-integer-past-64-bits": (
        _with(b'"metadata": {"n": 18446744073709551616}'),
        "metadata",
    ),
    "metadata-integer-below-64-bits": (
        _with(b'"metadata": {"n": -9223372036854775809}'),
        "metadata",
    ),
    "body-lone-surrogate": (HEAD + b'"body": "\\udaa4"}', "body"),
    "metadata-value-lone-surrogate": (_with(b'"metadata": {"k": "\\udaa4"}'), "metadata"),
    "metadata-key-lone-surrogate": (_with(b'"metadata": {"\\ud800": 1}'), "metadata"),
    "metadata-nested-lone-surrogate": (_with(b'"metadata": {"a": [{"b": "\\udfff"}]}'), "metadata"),
    "body-nul": (HEAD + b'"body": "a\\u0000b"}', "body"),
    "from-lone-surrogate": (_with(b'"from": "+1500555\\udaa4"'), "from"),
    "metadata-nan": (_with(b'"metadata": {"f": NaN}'), "metadata"),
    "metadata-infinity": (_with(b'"metadata": {"f": -Infinity}'), "metadata"),
    "metadata-float-overflow": (_with(b'"metadata": {"f": 1e400}'), "metadata"),
    "metadata-too-deep": (
        _with(b'"metadata": {"k": ' + b"[" * 300 + b"]" * 300 + b"}"),
        "metadata",
    ),
}


async def test_a_value_that_cannot_be_stored_or_sent_is_a_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    """A JSON value no event, store or provider form can carry: 422 naming it, nothing stored."""
    before = row_counts()
    for case, (raw, field) in UNSENDABLE.items():
        response = await client.post(
            "/v1/notifications",
            content=raw,
            headers={**tenant.headers, "Content-Type": "application/json"},
        )

        assert response.status_code == 422, (case, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON, case
        problem = response.json()
        assert [e["field"] for e in problem["errors"]] == [field], case
        assert problem["detail"].startswith(f"{field}: "), case
    assert row_counts() == before


#: request bodies we cannot read as a JSON object of Unicode strings
MALFORMED = {
    "nested-past-the-parsers-limit": HEAD
    + b'"body": "x", "metadata": {"k": '
    + b"[" * 5000
    + b"]" * 5000
    + b"}}",
    "field-name-with-a-lone-surrogate": HEAD + b'"body": "x", "\\udaa4": 1}',
}


async def test_json_we_cannot_read_as_an_object_of_unicode_strings_is_a_400_storing_nothing(
    client: httpx.AsyncClient, tenant: Tenant, row_counts: Callable[[], dict[str, int]]
) -> None:
    """Arrays nested 5,000 deep, or a lone surrogate in a field name: 400 problem, no write."""
    before = row_counts()
    for case, raw in MALFORMED.items():
        response = await client.post(
            "/v1/notifications",
            content=raw,
            headers={**tenant.headers, "Content-Type": "application/json"},
        )

        assert response.status_code == 400, (case, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON, case
    assert row_counts() == before


#: values at the edge of what we accept: each must come back exactly as sent
EDGE_METADATA = {
    "largest-unsigned-64-bit": {"n": 2**64 - 1},
    "smallest-signed-64-bit": {"n": -(2**63)},
    "nul-inside-a-string": {"k": "a\x00b"},
    "astral-characters": {"emoji": "😀", "key 😀": ["\u2028", "\ufeff"]},
    "nested-32-deep": {"k": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
    "float": {"f": 1.5e300},
}


async def test_metadata_at_the_edge_of_the_rules_is_accepted_and_read_back_unchanged(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Accepted metadata survives the event envelope and the store on both stacks, unchanged."""
    for case, metadata in EDGE_METADATA.items():
        body = {"channel": "sms", "to": "+14155550123", "body": "héllo 😀", "metadata": metadata}

        accepted = await client.post(
            "/v1/notifications",
            content=orjson.dumps(body),
            headers={**tenant.headers, "Content-Type": "application/json"},
        )
        assert accepted.status_code == 202, (case, accepted.text)
        read = await client.get(accepted.headers["Location"], headers=tenant.headers)

        assert read.status_code == 200, case
        assert read.json()["metadata"] == metadata, case


#: signed status callbacks whose values no PostgreSQL text column takes
ODD_CALLBACKS = {
    "nul-in-message-sid": {"MessageSid": "SM\x00", "MessageStatus": "delivered"},
    "nul-in-status": {"MessageSid": "SM1", "MessageStatus": "deli\x00vered"},
    "nul-in-error-code": {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "3\x00"},
    "nul-in-another-field": {"MessageSid": "SM1", "MessageStatus": "delivered", "X\x00": "\x00"},
    "message-sid-past-64-characters": {"MessageSid": "SM" + "a" * 63, "MessageStatus": "delivered"},
    "huge-error-code": {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "9" * 40},
}


async def test_a_signed_callback_with_values_we_cannot_store_is_answered_without_a_5xx(
    client: httpx.AsyncClient,
    pigeon: Pigeon,
    row_counts: Callable[[], dict[str, int]],
) -> None:
    """Correctly signed but odd callbacks: never a 5xx; those refused write nothing."""
    for case, params in ODD_CALLBACKS.items():
        before = row_counts()
        signature = compute_signature(AUTH_TOKEN, pigeon.status_callback_url, params)

        response = await client.post(
            TWILIO_STATUS_PATH,
            content=urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )

        assert response.status_code in (200, 400), (case, response.text)
        if response.status_code == 400:
            assert response.headers["content-type"] == PROBLEM_JSON, case
            assert row_counts() == before, case


#: ids in the path that no row can have; PostgreSQL refused the NUL one (a 503), and
#: "%2F" was redirected (307) to a path that did not exist
IMPOSSIBLE_IDS = ("%00", "ntf_%00", "a" * 5000, "%C3%A9", "%2F")


async def test_an_id_no_row_can_have_is_a_404_on_every_route_that_takes_one(
    client: httpx.AsyncClient, tenant: Tenant, pigeon: Pigeon
) -> None:
    """A NUL, slash, non-ASCII or 5,000-character id: 404 problem on both stacks, never a 5xx."""
    _, admin_key = await pigeon.store.create_api_key("ops", admin=True)
    admin = {"Authorization": f"Bearer {admin_key}"}
    for raw in IMPOSSIBLE_IDS:
        for method, path, headers in (
            ("GET", f"/v1/notifications/{raw}", tenant.headers),
            ("GET", f"/v1/admin/dead-letters/{raw}", admin),
            ("POST", f"/v1/admin/dead-letters/{raw}/replay", admin),
        ):
            response = await client.request(method, path, headers=headers)

            assert response.status_code == 404, (method, path[:40], response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
