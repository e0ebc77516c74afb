"""Generated requests to every sandbox route: its Twilio-compatible API and its control API.

With no fault switched on, no request gets a 5xx; errors of the control routes
are problem+json, errors of the Twilio routes are Twilio's JSON error shape.
Callback URLs are only ever a closed port on 127.0.0.1, so nothing leaves the
machine.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from sandbox_testkit import ACCOUNT_SID, AUTH_TOKEN
from tests.fuzzing import TIMEOUT, json_values, nasty_text, scaled
from tests.support import free_port

from pigeon.sandbox import SandboxServer
from pigeon.sandbox.faults import FaultConfig

TWILIO = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
AUTH = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
#: a port nobody listens on: callbacks and forged callbacks go nowhere
CLOSED = f"http://127.0.0.1:{free_port()}/cb"


@dataclass
class SandboxRequest:
    """One generated request."""

    route: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


def _text() -> st.SearchStrategy[str]:
    # what reaches a form or a query: percent-encoded UTF-8, lone surrogates included
    return nasty_text


def _form(fields: dict[str, str]) -> bytes:
    pairs = [
        (k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
        for k, v in fields.items()
    ]
    return urlencode(pairs).encode()


# Hypothesis leans to the first branch of one_of: mostly valid messages, so most are accepted
twilio_fields = st.fixed_dictionaries(
    {
        "To": st.one_of(st.just("+14155550123"), _text()),
        "From": st.one_of(st.just("+15005550006"), _text()),
        "Body": st.one_of(st.just("hello"), _text(), st.just("x" * 2000)),
    },
    optional={
        "StatusCallback": st.one_of(
            st.just(CLOSED), st.just(""), st.just("not a url"), st.just("http://[")
        ),
    },
)


@st.composite
def sandbox_requests(draw: st.DrawFn) -> SandboxRequest:
    """A request for one of the sandbox's routes, parts of it hostile."""
    route = draw(
        st.sampled_from(
            [
                "POST Messages.json",
                "GET Messages.json",
                "GET Messages/{sid}.json",
                "GET /sandbox/health",
                "GET /sandbox/messages",
                "DELETE /sandbox/messages",
                "GET /sandbox/messages/{sid}",
                "GET /sandbox/stats",
                "GET /sandbox/faults",
                "PUT /sandbox/faults",
                "POST /sandbox/callbacks/forge",
            ]
        )
    )
    method, _, path = route.partition(" ")
    headers = {"Authorization": draw(st.sampled_from([AUTH, AUTH, AUTH, "", "Basic x"]))}
    query = draw(
        st.dictionaries(
            st.sampled_from(["To", "From", "PageSize", "Page", "DateSent>", "limit", "status"]),
            st.one_of(_text(), st.integers().map(str)),
            max_size=3,
        )
    )
    sid = quote(
        draw(st.one_of(st.just("SM" + "0" * 32), _text().filter(bool))),
        safe="",
        errors="surrogatepass",
    )
    path = path.replace("{sid}", sid)
    if not path.startswith("/"):
        path = f"{TWILIO}/{path}"
    request = SandboxRequest(route, method, path, headers)
    if query:
        encoded = {k.encode(): v.encode("utf-8", "surrogatepass") for k, v in query.items()}
        request.path += "?" + urlencode(encoded)
    if route == "POST Messages.json":
        request.headers["Content-Type"] = "application/x-www-form-urlencoded"
        request.body = draw(st.one_of(twilio_fields.map(_form), st.binary(max_size=100)))
    elif route == "PUT /sandbox/faults":
        changes = st.dictionaries(
            st.sampled_from(["latency_ms", "error_rate", "rate_429", "down", "error_codes", "x"]),
            json_values,
        )
        request.body = draw(st.one_of(changes, json_values).map(_json))
    elif route == "POST /sandbox/callbacks/forge":
        spec = st.fixed_dictionaries(
            {"url": st.one_of(st.just(CLOSED), st.just("ftp://x"), json_values)},
            optional={
                "kind": st.one_of(st.sampled_from(["valid", "unsigned"]), json_values),
                "message_sid": json_values,
                "status": json_values,
                "error_code": json_values,
            },
        )
        request.body = draw(st.one_of(spec.map(_json), st.binary(max_size=50)))
    return request


def _json(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _create(body: bytes) -> SandboxRequest:
    headers = {"Authorization": AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    return SandboxRequest("POST Messages.json", "POST", f"{TWILIO}/Messages.json", headers, body)


@pytest.mark.timeout(TIMEOUT)
@scaled(200)
@given(request=sandbox_requests())
# found by this test: each answered 500
@example(request=_create(b"\x80"))  # not UTF-8
@example(request=_create(b"Body=" + b"x" * 70_000))  # over the 64 KB limit: aiohttp's 413
@example(  # a sid aiohttp's router does not match ("{") got its plain-text 404
    request=SandboxRequest(
        "GET Messages/{sid}.json", "GET", f"{TWILIO}/Messages/%7B.json", {"Authorization": AUTH}
    )
)
@example(  # a Page past 64 bits was echoed into the answer: orjson refused it
    request=SandboxRequest(
        "GET Messages.json", "GET", f"{TWILIO}/Messages.json?Page={2**64}", {"Authorization": AUTH}
    )
)
@example(
    request=_create(
        _form({"To": "+14155550123", "From": "+1", "Body": "x"}) + b"&StatusCallback=http://["
    )
)
async def test_no_generated_request_gets_a_5xx_from_the_sandbox_and_errors_keep_their_shape(
    sandbox: SandboxServer, http: aiohttp.ClientSession, request: SandboxRequest
) -> None:
    """Any request to any sandbox route: < 500 (502 only for an unreachable forge target)."""
    try:
        async with http.request(
            request.method,
            sandbox.url + request.path,
            headers=request.headers,
            data=request.body,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            status = response.status
            content_type = response.headers.get("Content-Type", "")
            body = await response.read()
    finally:
        sandbox.faults.config = FaultConfig()  # a generated fault must not hang the next one
    event(f"{request.route} -> {status}")

    unreachable_forge = request.route.endswith("forge") and status == 502
    assert status < 500 or unreachable_forge, (status, body[:300])
    if status >= 400 and request.path.startswith("/sandbox/"):
        assert content_type.startswith("application/problem+json"), (content_type, body[:300])
        assert json.loads(body)["status"] == status
    elif status >= 400:
        assert content_type.startswith("application/json"), (content_type, body[:300])
        error = json.loads(body)
        assert {"code", "message", "status"} <= set(error), error
