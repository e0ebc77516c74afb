"""What every route needs: JSON answers and the caller's account."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response
from starlette.types import Scope

from pigeon.domain.notification import Account
from pigeon.errors import AuthenticationError, PermissionDenied
from pigeon.store.sql_store import SqlStore


def json_response(
    payload: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers
    )


#: ids we issue are short visible ASCII (``ntf_…``, ``dl_…``); the store's id columns hold 40
MAX_ID_CHARS = 64


def could_be_our_id(value: str) -> bool:
    """False for a path id no row can have (NUL, which PostgreSQL refuses, or too long).

    Such ids are answered 404 without asking the store, which would fail on them.
    """
    return 0 < len(value) <= MAX_ID_CHARS and value.isascii() and value.isprintable()


#: the security scheme /docs offers ("Authorize") and every authenticated route names
BEARER = HTTPBearer(
    auto_error=False,  # our own 401 problems, below
    scheme_name="apiKey",
    description="An API key: `pigeon keys create --account NAME` prints one (pgn_…).",
)


async def current_account(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Account:
    """The account whose API key the request carries, or a 401."""
    key = credentials.credentials.strip() if credentials is not None else ""
    if not key:
        if not request.headers.get("authorization"):
            raise AuthenticationError("missing 'Authorization: Bearer <API key>' header")
        raise AuthenticationError("the Authorization header must be 'Bearer <API key>'")
    store: SqlStore = request.app.state.store
    account = await store.authenticate(key)
    if account is None:
        raise AuthenticationError("unknown or revoked API key")
    return account


AccountDep = Annotated[Account, Depends(current_account)]


def bearer_key(scope: Scope) -> str:
    """The API key of an ``Authorization: Bearer`` header in an ASGI scope, or ``""``."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key.strip() if scheme.lower() == "bearer" else ""
    return ""


async def admin_account(account: AccountDep) -> Account:
    """The caller's account if its key is an admin key, or a 403."""
    if not account.is_admin:
        raise PermissionDenied("this route needs an admin API key ('pigeon keys create --admin')")
    return account


AdminDep = Annotated[Account, Depends(admin_account)]
