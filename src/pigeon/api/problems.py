"""RFC 9457 problem details: every error the API returns looks like this."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from pigeon.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    StoreUnavailable,
    ValidationError,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    type_: str = "about:blank",
) -> Response:
    """A ``application/problem+json`` response."""
    body = problem_body(status, detail, errors=errors, type_=type_)
    try:
        content = orjson.dumps(body)
    except TypeError:
        # a field name or reason quoting the caller's input may hold a lone
        # surrogate, which no JSON encoder writes: show it escaped instead
        content = orjson.dumps(_escaped(body))
    return Response(content, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_body(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    type_: str = "about:blank",
) -> dict[str, Any]:
    """The JSON object of a problem (a response's body, or one item's result in a batch)."""
    body: dict[str, Any] = {
        "type": type_,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return body


def validation_problem(
    errors: Sequence[Mapping[str, Any]],
) -> tuple[int, str, list[dict[str, str]] | None]:
    """Status, detail and field errors for pydantic's ``errors()`` of a request body."""
    described = []
    for error in errors:
        if error.get("type") == "json_invalid":
            return 400, f"request body is not valid JSON: {error.get('msg')}", None
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") == "string_unicode":
            # pydantic cannot even name the field: a key holds a lone surrogate
            return (
                400,
                "request body has a field name with a lone UTF-16 surrogate (\\udXXX), "
                "which is not valid Unicode",
                None,
            )
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") in (
            "model_attributes_type",
            "dict_type",
            "missing",
        ):
            return (
                400,
                "request body must be a JSON object sent with 'Content-Type: application/json'",
                None,
            )
        field = _field_name(tuple(error.get("loc", ())))
        reason = str(error.get("msg", "invalid"))
        if error.get("type") == "missing":
            reason = "is required"
        reason = reason.removeprefix("Value error, ")
        described.append({"field": field, "reason": reason})
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in described)
    return 422, detail, described


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    return value


#: what a problem looks like in the OpenAPI document
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}
#: every route may answer these: an oversized body, and (when the store is down) 503
ALWAYS = (413,)
#: routes behind an API key that read or write the store
AUTHENTICATED = (*ALWAYS, 401, 422, 429, 503)


#: what each error status means here, as the example a route's documentation shows
_EXAMPLES: dict[int, tuple[str, list[dict[str, str]] | None]] = {
    400: ("request body is not valid JSON: Expecting value", None),
    401: ("unknown or revoked API key", None),
    403: ("this route needs an admin API key ('pigeon keys create --admin')", None),
    404: ("no notification 'ntf_01J…' in this account", None),
    409: (
        "Idempotency-Key 'order-1234' was already used with a different request body "
        "(notification ntf_01J…); use a new key for a new request",
        None,
    ),
    413: ("request body is larger than 65536 bytes", None),
    422: (
        "to: '+1 415' is not in E.164 format ('+' then the country code and number)",
        [{"field": "to", "reason": "'+1 415' is not in E.164 format"}],
    ),
    429: (
        "rate limit of 50 requests/s (burst 50) reached; retry after the Retry-After seconds",
        None,
    ),
    503: ("the notification store is unavailable; nothing was stored, retry later", None),
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer, as problem+json,
    each with an example body."""
    return {
        status: {
            "description": _TITLES[status],
            "content": {
                PROBLEM_JSON: {
                    "schema": _PROBLEM_SCHEMA,
                    "example": _example(status),
                }
            },
        }
        for status in sorted(set(statuses))
    }


def _example(status: int) -> dict[str, Any]:
    detail, errors = _EXAMPLES.get(status, (_TITLES[status].lower(), None))
    return problem_body(status, detail, errors=errors)


def store_unavailable() -> Response:
    """The ``503`` of a write the store could not take."""
    return problem(
        503,
        "the notification store is unavailable; nothing was stored, retry later",
        headers={"Retry-After": "1"},
    )


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Map every error to a problem response; no stack trace ever reaches a caller."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        status, detail, errors = validation_problem(exc.errors())
        return problem(status, detail, errors=errors)

    @app.exception_handler(ValidationError)
    async def _domain_invalid(_request: Request, exc: ValidationError) -> Response:
        return problem(422, str(exc), errors=[{"field": exc.field, "reason": exc.reason}])

    @app.exception_handler(AuthenticationError)
    async def _unauthenticated(_request: Request, exc: AuthenticationError) -> Response:
        return problem(401, str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(PermissionDenied)
    async def _forbidden(_request: Request, exc: PermissionDenied) -> Response:
        return problem(403, str(exc))

    @app.exception_handler(NotFoundError)
    async def _not_found(_request: Request, exc: NotFoundError) -> Response:
        return problem(404, str(exc))

    @app.exception_handler(ConflictError)
    async def _conflict(_request: Request, exc: ConflictError) -> Response:
        return problem(409, str(exc))

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_request: Request, exc: StoreUnavailable) -> Response:
        log.error("store unavailable: %s", exc)
        return store_unavailable()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal error; it has been logged")
