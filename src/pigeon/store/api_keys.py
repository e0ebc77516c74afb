"""API keys: listing, revoking and rotating them (creating: ``SqlStore.create_api_key``).

Only a key's SHA-256 is stored, so a key is named by its id (``key_…``) and
shown by its first characters (``prefix``); the key itself is printed once,
when it is made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, RowMapping

from pigeon.errors import ConflictError, NotFoundError
from pigeon.store.rows import utc
from pigeon.store.schema import accounts, api_keys


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    """One API key as operators see it (never the key itself)."""

    id: str
    account_id: str
    account_name: str
    prefix: str
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the key still authenticates."""
        return self.revoked_at is None


_VIEW = select(
    api_keys.c.id,
    api_keys.c.account_id,
    accounts.c.name,
    api_keys.c.prefix,
    api_keys.c.is_admin,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
    api_keys.c.key_hash,
).join(accounts, accounts.c.id == api_keys.c.account_id)


def _view(m: RowMapping) -> ApiKeyView:
    return ApiKeyView(
        id=str(m["id"]),
        account_id=str(m["account_id"]),
        account_name=str(m["name"]),
        prefix=str(m["prefix"]),
        is_admin=bool(m["is_admin"]),
        created_at=utc(m["created_at"]),
        revoked_at=utc(m["revoked_at"]) if m["revoked_at"] is not None else None,
    )


def list_keys(conn: Connection, account_name: str | None = None) -> list[ApiKeyView]:
    """Every key (of ``account_name``'s account, if given), oldest first."""
    query = _VIEW.order_by(api_keys.c.created_at, api_keys.c.id)
    if account_name is not None:
        query = query.where(accounts.c.name == account_name)
    return [_view(row._mapping) for row in conn.execute(query)]


def revoke(conn: Connection, key_id: str, now: datetime) -> tuple[ApiKeyView, str]:
    """Revoke the active key ``key_id``: its view afterwards and its hash.

    :class:`NotFoundError` for an unknown id, :class:`ConflictError` for a key
    revoked before (revoking is not undone, and saying so beats a silent no-op).
    """
    row = conn.execute(_VIEW.where(api_keys.c.id == key_id)).first()
    if row is None:
        raise NotFoundError(f"no API key {key_id!r}")
    key = _view(row._mapping)
    if not key.active:
        raise ConflictError(f"API key {key_id!r} was already revoked at {key.revoked_at}")
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=now))
    return dataclasses.replace(key, revoked_at=now), str(row._mapping["key_hash"])
