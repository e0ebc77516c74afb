"""Status webhook routes: an account's endpoints, their secrets, delivery log and replay.

``POST /v1/webhook-endpoints`` shows the signing secret once; every other answer
leaves secrets out. An account sees only its own endpoints (another's is a 404).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from pigeon.api.deps import AccountDep, could_be_our_id, json_response
from pigeon.api.problems import AUTHENTICATED, documented
from pigeon.api.schemas import unsendable_reason
from pigeon.domain.events import format_time
from pigeon.domain.webhooks import (
    MAX_DESCRIPTION_CHARS,
    STATUS_EVENT_TYPES,
    check_event_types,
    check_url,
)
from pigeon.errors import NotFoundError, ValidationError
from pigeon.store.sql_store import SqlStore
from pigeon.store.webhook_rows import (
    DELIVERY_STATES,
    MAX_ENDPOINTS,
    DeliveryView,
    EndpointView,
)
from pigeon.store.webhooks import WebhookStore

PREFIX = "/v1/webhook-endpoints"
#: the longest grace period a rotation may give the old secret
MAX_GRACE_HOURS = 24 * 30


def _sendable(value: str) -> str:
    reason = unsendable_reason(value)
    if reason:
        raise ValueError(reason)
    return value


class CreateEndpoint(BaseModel):
    """``POST /v1/webhook-endpoints``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        description="Where deliveries are POSTed: an http(s) URL, at most 2,000 characters.",
        examples=["https://example.com/hooks/pigeon"],
    )
    event_types: list[str] = Field(
        default_factory=list,
        description="The status events wanted; empty or absent: every one. "
        f"Any of {', '.join(STATUS_EVENT_TYPES)}.",
        examples=[["SmsDelivered", "SmsFailed"]],
        max_length=len(STATUS_EVENT_TYPES) * 2,
    )
    description: str = Field(
        default="",
        max_length=MAX_DESCRIPTION_CHARS,
        description="Your own note about the endpoint.",
        examples=["order service"],
    )

    @field_validator("url", "description")
    @classmethod
    def _text(cls, value: str) -> str:
        return _sendable(value)


class RotateSecret(BaseModel):
    """``POST /v1/webhook-endpoints/{id}/rotate-secret``."""

    model_config = ConfigDict(extra="forbid")

    grace_hours: float = Field(
        default=24.0,
        ge=0,
        le=MAX_GRACE_HOURS,
        allow_inf_nan=False,
        description="How long the current secret keeps signing beside the new one (0: not).",
        examples=[24],
    )


class WebhookEndpoint(BaseModel):
    """An endpoint as its account sees it (never its secret)."""

    id: str = Field(examples=["whe_01JDX3…"])
    url: str = Field(examples=["https://example.com/hooks/pigeon"])
    event_types: list[str] = Field(description="Empty: every status event.", examples=[[]])
    description: str
    created_at: datetime
    enabled: bool = Field(description="False once disabled (410 Gone, or failing too long).")
    disabled_at: datetime | None
    disabled_reason: str | None = Field(
        examples=["the endpoint answered 410 Gone"], description="Why it was disabled."
    )
    failing_since: datetime | None = Field(description="Since when every attempt has failed.")
    previous_secret_expires_at: datetime | None = Field(
        description="While a rotation's grace period lasts: when the old secret stops signing."
    )


class WebhookEndpointCreated(WebhookEndpoint):
    """A new endpoint, or a new secret: the only time the secret is shown."""

    secret: str = Field(
        description="Signing secret (Standard Webhooks): keep it; it is never shown again.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookDelivery(BaseModel):
    """One delivery of one status event to one endpoint."""

    id: str = Field(description="The webhook-id header, the same on every attempt.")
    event_id: str
    notification_id: str
    event_type: str = Field(examples=["SmsDelivered"])
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None = Field(examples=[500])
    last_error: str | None = Field(examples=["HTTP 500: upstream unavailable"])
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The body that is POSTed.")


class ReplayAnswer(BaseModel):
    """What a replay requeued."""

    requeued: int = Field(description="Deliveries sent again.", examples=[3])


def endpoint_json(view: EndpointView, secret: str | None = None) -> dict[str, Any]:
    """An endpoint as the API shows it (the secret only when just made)."""
    out: dict[str, Any] = {
        "id": view.id,
        "url": view.url,
        "event_types": view.event_types,
        "description": view.description,
        "created_at": format_time(view.created_at),
        "enabled": view.disabled_at is None,
        "disabled_at": format_time(view.disabled_at) if view.disabled_at else None,
        "disabled_reason": view.disabled_reason,
        "failing_since": format_time(view.failing_since) if view.failing_since else None,
        "previous_secret_expires_at": (
            format_time(view.previous_secret_expires_at)
            if view.previous_secret_expires_at
            else None
        ),
    }
    if secret is not None:
        out["secret"] = secret
    return out


def delivery_json(view: DeliveryView) -> dict[str, Any]:
    """A delivery as the endpoint's log shows it."""
    return {
        "id": view.id,
        "event_id": view.event_id,
        "notification_id": view.notification_id,
        "event_type": view.event_type,
        "state": view.state,
        "attempts": view.attempts,
        "next_attempt_at": format_time(view.next_attempt_at) if view.next_attempt_at else None,
        "last_status_code": view.last_status_code,
        "last_error": view.last_error,
        "created_at": format_time(view.created_at),
        "delivered_at": format_time(view.delivered_at) if view.delivered_at else None,
        "payload": orjson.loads(view.payload),
    }


def _webhooks(request: Request) -> WebhookStore:
    store: SqlStore = request.app.state.store
    return store.webhooks


def _endpoint_id(endpoint_id: str) -> str:
    """``endpoint_id`` if it could be one of ours; else NotFoundError (no store round trip)."""
    if not could_be_our_id(endpoint_id):
        raise NotFoundError(f"no webhook endpoint {endpoint_id!r} in this account")
    return endpoint_id


def webhooks_router() -> APIRouter:
    """The ``/v1/webhook-endpoints`` routes."""
    router = APIRouter(prefix=PREFIX, tags=["webhooks"])

    @router.post(
        "",
        status_code=201,
        response_model=WebhookEndpointCreated,
        summary=f"Add a webhook endpoint (at most {MAX_ENDPOINTS} per account)",
        responses=documented(*AUTHENTICATED, 400, 409),
    )
    async def create_endpoint(
        body: CreateEndpoint, request: Request, account: AccountDep
    ) -> Response:
        view, secret = await _webhooks(request).create_endpoint(
            account.id,
            url=check_url(body.url),
            event_types=check_event_types(body.event_types),
            description=body.description,
        )
        return json_response(endpoint_json(view, secret), 201)

    @router.get(
        "",
        response_model=list[WebhookEndpoint],
        summary="List the account's webhook endpoints",
        responses=documented(*AUTHENTICATED),
    )
    async def list_endpoints(request: Request, account: AccountDep) -> Response:
        views = await _webhooks(request).endpoints(account.id)
        return json_response([endpoint_json(view) for view in views])

    @router.get(
        "/{endpoint_id}",
        response_model=WebhookEndpoint,
        summary="One webhook endpoint",
        responses=documented(*AUTHENTICATED, 404),
    )
    async def get_endpoint(endpoint_id: str, request: Request, account: AccountDep) -> Response:
        view = await _webhooks(request).endpoint(account.id, _endpoint_id(endpoint_id))
        return json_response(endpoint_json(view))

    @router.delete(
        "/{endpoint_id}",
        status_code=204,
        summary="Delete a webhook endpoint and its delivery log",
        responses=documented(*AUTHENTICATED, 404),
    )
    async def delete_endpoint(endpoint_id: str, request: Request, account: AccountDep) -> Response:
        await _webhooks(request).delete_endpoint(account.id, _endpoint_id(endpoint_id))
        return Response(status_code=204)

    @router.post(
        "/{endpoint_id}/rotate-secret",
        response_model=WebhookEndpointCreated,
        summary="Replace the signing secret (both sign during the grace period)",
        responses=documented(*AUTHENTICATED, 400, 404),
    )
    async def rotate_secret(
        endpoint_id: str,
        request: Request,
        account: AccountDep,
        body: RotateSecret | None = None,
    ) -> Response:
        grace = timedelta(hours=(body or RotateSecret()).grace_hours)
        view, secret = await _webhooks(request).rotate_secret(
            account.id, _endpoint_id(endpoint_id), grace
        )
        return json_response(endpoint_json(view, secret))

    @router.post(
        "/{endpoint_id}/enable",
        response_model=WebhookEndpoint,
        summary="Enable a disabled endpoint again (its waiting deliveries go at once)",
        responses=documented(*AUTHENTICATED, 404),
    )
    async def enable_endpoint(endpoint_id: str, request: Request, account: AccountDep) -> Response:
        view = await _webhooks(request).enable(account.id, _endpoint_id(endpoint_id))
        return json_response(endpoint_json(view))

    @router.get(
        "/{endpoint_id}/deliveries",
        response_model=list[WebhookDelivery],
        summary="The endpoint's delivery log, newest first",
        responses=documented(*AUTHENTICATED, 404),
    )
    async def list_deliveries(
        endpoint_id: str,
        request: Request,
        account: AccountDep,
        state: Annotated[
            Literal["pending", "delivered", "failed"] | None,
            Query(description=f"Only deliveries in this state ({', '.join(DELIVERY_STATES)})."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
    ) -> Response:
        views = await _webhooks(request).deliveries(
            account.id, _endpoint_id(endpoint_id), state=state, limit=limit
        )
        return json_response([delivery_json(view) for view in views])

    @router.post(
        "/{endpoint_id}/replay",
        status_code=202,
        response_model=ReplayAnswer,
        summary="Send every delivery made since a moment again (same webhook-id)",
        responses=documented(*AUTHENTICATED, 404),
    )
    async def replay(
        endpoint_id: str,
        request: Request,
        account: AccountDep,
        since: Annotated[
            datetime,
            Query(
                description="ISO 8601; without an offset, UTC.", examples=["2026-11-30T12:00:00Z"]
            ),
        ],
    ) -> Response:
        try:
            moment = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError("since", "is out of range") from None
        count = await _webhooks(request).replay(account.id, _endpoint_id(endpoint_id), moment)
        return json_response({"requeued": count}, 202)

    return router
