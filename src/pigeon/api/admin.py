"""Admin routes: the dead-letter queue (list, show, replay); admin API keys only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from pigeon.api.deps import AdminDep, could_be_our_id, json_response
from pigeon.api.problems import AUTHENTICATED, documented
from pigeon.domain.events import format_time
from pigeon.errors import NotFoundError
from pigeon.store.api_keys import ApiKeyView
from pigeon.store.dead_letters import DeadLetterView
from pigeon.store.sql_store import SqlStore

PREFIX = "/v1/admin/dead-letters"
KEYS_PREFIX = "/v1/admin/keys"


def dead_letter_json(letter: DeadLetterView, *, payload: bool = False) -> dict[str, Any]:
    """A dead letter as the admin API (and ``pigeon dlq --json``) shows it."""
    out: dict[str, Any] = {
        "id": letter.id,
        "notification_id": letter.notification_id,
        "account_id": letter.account_id,
        "event_type": letter.event_type,
        "event_id": letter.event_id,
        "original_topic": letter.original_topic,
        "consumer_group": letter.consumer_group,
        "reason": letter.reason,
        "last_error": letter.last_error,
        "dead_at": format_time(letter.dead_at),
        "replayed_at": format_time(letter.replayed_at) if letter.replayed_at else None,
        "replayable": letter.replayable,
    }
    if payload:
        try:
            out["payload"] = orjson.loads(letter.payload)
        except orjson.JSONDecodeError:
            out["payload"] = letter.payload.decode("utf-8", "replace")
    return out


def api_key_json(key: ApiKeyView) -> dict[str, Any]:
    """An API key as the admin API (and ``pigeon keys list --json``) shows it: never the key."""
    return {
        "id": key.id,
        "account_id": key.account_id,
        "account": key.account_name,
        "prefix": key.prefix,
        "admin": key.is_admin,
        "created_at": format_time(key.created_at),
        "revoked_at": format_time(key.revoked_at) if key.revoked_at else None,
        "active": key.active,
    }


def store_of(request: Request) -> SqlStore:
    """The store the app was made with."""
    store: SqlStore = request.app.state.store
    return store


def _key_id(key_id: str) -> str:
    """``key_id`` if it could be one of ours; else NotFoundError (no store round trip)."""
    if not could_be_our_id(key_id):
        raise NotFoundError(f"no API key {key_id!r}")
    return key_id


def keys_router() -> APIRouter:
    """List, revoke and rotate API keys; every route requires an admin key."""
    router = APIRouter(prefix=KEYS_PREFIX, tags=["admin"])

    @router.get("", summary="List API keys", responses=documented(*AUTHENTICATED, 403))
    async def list_keys(
        request: Request,
        _admin: AdminDep,
        account: Annotated[str | None, Query(description="Only this account's keys.")] = None,
    ) -> Response:
        keys = await store_of(request).api_keys(account)
        return json_response([api_key_json(key) for key in keys])

    @router.post(
        "/{key_id}/revoke",
        summary="Revoke an API key (every API process refuses it within a second)",
        responses=documented(*AUTHENTICATED, 403, 404, 409),
    )
    async def revoke_key(request: Request, key_id: str, _admin: AdminDep) -> Response:
        revoked = await store_of(request).revoke_api_key(_key_id(key_id))
        return json_response(api_key_json(revoked))

    @router.post(
        "/{key_id}/rotate",
        status_code=201,
        summary="Replace an API key by a new one (shown only once) and revoke it",
        responses=documented(*AUTHENTICATED, 403, 404, 409),
    )
    async def rotate_key(request: Request, key_id: str, _admin: AdminDep) -> Response:
        old, key = await store_of(request).rotate_api_key(_key_id(key_id))
        return json_response({"revoked": api_key_json(old), "key": key}, 201)

    return router


def admin_router() -> APIRouter:
    """The admin routes; every one requires an admin key."""
    router = APIRouter(prefix=PREFIX, tags=["admin"])

    @router.get("", summary="List dead letters", responses=documented(*AUTHENTICATED, 403))
    async def list_dead_letters(
        request: Request,
        _admin: AdminDep,
        since: Annotated[
            datetime | None, Query(description="Only those dead since (ISO 8601).")
        ] = None,
        include_replayed: Annotated[bool, Query(description="Also those replayed.")] = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        letters = await store_of(request).dead_letters(
            since=since, include_replayed=include_replayed, limit=limit
        )
        return json_response([dead_letter_json(letter) for letter in letters])

    @router.get(
        "/{dead_letter_id}",
        summary="One dead letter",
        responses=documented(*AUTHENTICATED, 403, 404),
    )
    async def show_dead_letter(request: Request, dead_letter_id: str, _admin: AdminDep) -> Response:
        store = store_of(request)
        letter = (
            await store.dead_letter(dead_letter_id) if could_be_our_id(dead_letter_id) else None
        )
        if letter is None:
            raise NotFoundError(f"no dead letter {dead_letter_id!r}")
        return json_response(dead_letter_json(letter, payload=True))

    @router.post(
        "/{dead_letter_id}/replay",
        status_code=202,
        summary="Replay one dead letter",
        responses=documented(*AUTHENTICATED, 403, 404, 409),
    )
    async def replay_dead_letter(
        request: Request, dead_letter_id: str, _admin: AdminDep
    ) -> Response:
        if not could_be_our_id(dead_letter_id):
            raise NotFoundError(f"no dead letter {dead_letter_id!r}")
        notification_id = await store_of(request).replay_dead_letter(dead_letter_id)
        return json_response(
            {"dead_letter_id": dead_letter_id, "notification_id": notification_id}, 202
        )

    @router.post(
        "/replay",
        status_code=202,
        summary="Replay every dead letter",
        responses=documented(*AUTHENTICATED, 403),
    )
    async def replay_all(
        request: Request,
        _admin: AdminDep,
        since: Annotated[
            datetime | None, Query(description="Only those dead since (ISO 8601).")
        ] = None,
    ) -> Response:
        report = await store_of(request).replay_dead_letters(since)
        return json_response(
            {
                "replayed": [
                    {"dead_letter_id": d, "notification_id": n} for d, n in report.replayed
                ],
                "skipped": [{"dead_letter_id": d, "reason": r} for d, r in report.skipped],
            },
            202,
        )

    return router
