"""Requests generated from Pigeon's live OpenAPI document (imported by module name).

Each operation in ``/openapi.json`` becomes a Hypothesis strategy of requests:
parameters and JSON bodies follow the schema, or are replaced by hostile values
(any JSON, nasty text, wrong types, deep nesting, raw bytes, wrong media types).
The status-callback route gets form bodies, signed or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from hypothesis import strategies as st
from tests.fuzzing import dumps, header_values, json_values, nasty_text, nested_json

from pigeon.api.app import TWILIO_STATUS_PATH
from pigeon.providers.signature import compute_signature

#: Twilio's status-callback fields, so generated forms look like real ones
CALLBACK_FIELDS = ("MessageSid", "MessageStatus", "ErrorCode", "AccountSid", "To", "From")
CALLBACK_STATUSES = ("queued", "sent", "delivered", "undelivered", "failed", "read", "")


@dataclass(frozen=True)
class Operation:
    """One method and path of the OpenAPI document."""

    method: str
    path: str
    parameters: list[dict[str, Any]]
    body_schema: dict[str, Any] | None
    documented: frozenset[int]

    def __repr__(self) -> str:
        return f"Operation({self.name})"

    @property
    def name(self) -> str:
        """``METHOD /path``."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Keys:
    """The API keys a generated request may carry."""

    tenant: str
    admin: str


@dataclass
class FuzzRequest:
    """A generated request, ready for httpx."""

    operation: Operation
    method: str
    url: str
    headers: dict[str, bytes] = field(default_factory=dict)
    content: bytes | None = None

    def __repr__(self) -> str:
        return f"FuzzRequest({self.method} {self.url!r} {self.headers!r} {self.content!r})"


class Document(dict[str, Any]):
    """The OpenAPI document, shown short in Hypothesis' reports."""

    def __repr__(self) -> str:
        return "<openapi.json>"


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation of an OpenAPI document."""
    found = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    parameters=op.get("parameters", []),
                    body_schema=schema,
                    documented=frozenset(int(code) for code in op["responses"]),
                )
            )
    return found


def from_schema(schema: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for ``schema`` (the subset of JSON Schema FastAPI emits)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return from_schema(document["components"]["schemas"][name], document)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, document) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "string":
        if schema.get("format") == "date":
            return st.dates().map(lambda d: d.isoformat())
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat())
        examples = schema.get("examples", [])
        return st.sampled_from(examples) if examples else nasty_text.filter(bool)
    if kind == "object":
        props = schema.get("properties", {})
        if not props:
            return st.dictionaries(nasty_text, json_values, max_size=4)
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: hostile(from_schema(v, document)) for k, v in props.items() if k in required},
            optional={
                k: hostile(from_schema(v, document)) for k, v in props.items() if k not in required
            },
        )
    return json_values


def usually(
    common: st.SearchStrategy[Any], *rare: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """``common`` four times in five, else one of ``rare``."""
    # Hypothesis favours the bounds of a range (and shrinks towards them): the rare
    # branch sits in the middle, so the bias and shrinking both lean to ``common``
    return st.integers(0, 4).flatmap(lambda n: st.one_of(*rare) if n == 2 else common)


def hostile(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly valid values, sometimes any JSON value at all."""
    return usually(valid, json_values)


def _authorization(keys: Keys) -> st.SearchStrategy[bytes | None]:
    valid = st.sampled_from([keys.tenant, keys.admin]).map(lambda k: f"Bearer {k}".encode())
    return usually(
        valid,
        st.none(),
        header_values,
        header_values.map(lambda v: b"Bearer " + v),
    )


def _parameter(param: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy[Any]:
    text = nasty_text.map(lambda t: t.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    if param["in"] == "header":
        return st.one_of(st.none(), header_values, st.text(min_size=1, max_size=20))
    valid = from_schema(param["schema"], document)
    if param["in"] == "path":
        return st.one_of(valid, text.filter(bool), st.sampled_from(["ntf_x", "dl_x", "%", ".."]))
    return st.one_of(st.none(), valid, text, st.integers())


@st.composite
def _callback_body(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A form body for the status callback, and whether to sign it."""
    form: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(CALLBACK_FIELDS), unique=True)):
        if name == "MessageStatus":
            form[name] = draw(st.one_of(st.sampled_from(CALLBACK_STATUSES), nasty_text))
        else:
            form[name] = draw(nasty_text)
    form.update(draw(st.dictionaries(nasty_text, nasty_text, max_size=3)))
    pairs = [
        (k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
        for k, v in form.items()
    ]
    body = draw(st.one_of(st.just(urlencode(pairs).encode()), st.binary(max_size=200)))
    return body, draw(st.booleans())


@st.composite
def _nested_body(draw: st.DrawFn) -> bytes:
    nested = draw(nested_json)
    where = draw(st.sampled_from(["metadata", "body", "top"]))
    if where == "top":
        return nested.encode()
    inner = f'{{"k": {nested}}}' if where == "metadata" else nested
    return f'{{"channel": "sms", "to": "+14155550123", "body": "x", "{where}": {inner}}}'.encode()


def _json_body(schema: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return usually(
        from_schema(schema, document).map(dumps),
        _nested_body(),
        json_values.map(dumps),
        st.binary(max_size=200),
    )


@st.composite
def requests(
    draw: st.DrawFn,
    op: Operation,
    *,
    document: dict[str, Any],
    keys: Keys,
    callback_url: str,
    callback_token: str,
) -> FuzzRequest:
    """A request for ``op``: its parameters, headers and body, each maybe hostile."""
    path, query = op.path, []
    headers: dict[str, bytes] = {}
    for param in op.parameters:
        if param["name"].lower() == "authorization":
            value = draw(_authorization(keys))
        else:
            value = draw(_parameter(param, document))
        if value is None:
            continue
        if param["in"] == "path":
            encoded = quote(str(value), safe="", errors="surrogatepass")
            path = path.replace("{" + param["name"] + "}", encoded)
        elif param["in"] == "query":
            query.append((param["name"], str(value)))
        elif param["in"] == "header":
            headers[param["name"]] = value if isinstance(value, bytes) else value.encode()
    request = FuzzRequest(op, op.method, path, headers)
    if op.path == TWILIO_STATUS_PATH:
        query_string = draw(st.one_of(st.just(""), st.just("n=ntf_1"), nasty_text))
        query_string = quote(query_string, safe="=&", errors="replace")
        body, signed = draw(_callback_body())
        request.url = path + (f"?{query_string}" if query_string else "")
        request.content = body
        request.headers["Content-Type"] = b"application/x-www-form-urlencoded"
        if signed:
            params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            url = callback_url + (f"?{query_string}" if query_string else "")
            request.headers["X-Twilio-Signature"] = compute_signature(
                callback_token, url, params
            ).encode()
        return request
    if query:
        request.url = f"{path}?{urlencode(query, errors='replace')}"
    if op.body_schema is not None:
        request.content = draw(_json_body(op.body_schema, document))
        request.headers["Content-Type"] = draw(
            usually(
                st.just(b"application/json"),
                st.sampled_from([b"text/plain", b"application/x-www-form-urlencoded", b""]),
            )
        )
    elif draw(st.integers(0, 4)) == 0:
        request.content = draw(st.binary(max_size=100))
    return request
