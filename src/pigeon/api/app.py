"""The HTTP API: thin routes over the store; errors as problem+json."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Header, Query, Request
from fastapi_offline import FastAPIOffline
from starlette.responses import Response

from pigeon import __version__, tracing
from pigeon.api import problems
from pigeon.api.accepting import accepted_answer, new_notification
from pigeon.api.account_limits import (
    AccountRateLimit,
    QuotaGuard,
    RateLimiter,
    limits_router,
)
from pigeon.api.actions import BATCH_PATH, actions_router
from pigeon.api.admin import admin_router, keys_router
from pigeon.api.bodies import detail_body, page_body, usage_item
from pigeon.api.deps import AccountDep, could_be_our_id, json_response
from pigeon.api.fast_path import FastPath, SignatureCheck
from pigeon.api.idempotency import check_idempotency_key, request_hash
from pigeon.api.limits import BodySizeLimit
from pigeon.api.schemas import (
    NotificationAccepted,
    NotificationDetail,
    NotificationPage,
    SendNotification,
    UsageItem,
)
from pigeon.api.stream import StatusStreams
from pigeon.api.webhooks import webhooks_router
from pigeon.console import ConsoleOptions, console_router
from pigeon.domain.phone import normalize_e164
from pigeon.domain.status import NotificationStatus
from pigeon.errors import ConflictError, NotFoundError, PigeonError, ValidationError
from pigeon.metrics.endpoint import MetricsEndpoint, install_metrics
from pigeon.providers.signature import is_valid_signature
from pigeon.providers.twilio_reports import callback_refusal, report_from_callback
from pigeon.store.idempotency import IdempotentRequest
from pigeon.store.listing import MAX_PAGE, Cursor, NotificationFilter
from pigeon.store.sql_store import SqlStore

log = logging.getLogger(__name__)

TWILIO_STATUS_PATH = "/v1/providers/twilio/status"
#: the longest provider message id the store keeps


@dataclass(frozen=True)
class ApiConfig:
    """What the API needs besides the store."""

    #: the URL the provider is told to call back, as the provider signs it
    status_callback_url: str
    twilio_auth_token: str
    max_request_bytes: int = 64 * 1024
    #: the body limit of the batch route
    max_batch_bytes: int = 8 * 1024 * 1024
    #: auth tokens of the other providers in the failover list (each signs its callbacks)
    other_auth_tokens: tuple[str, ...] = ()
    #: more readiness checks beside the store's (the Kafka broker's); each raises if down
    ready_checks: tuple[Callable[[], Awaitable[None]], ...] = ()
    #: the web console's wiring (where the development sandbox may be; broker lag)
    console: ConsoleOptions | None = None
    #: what GET /metrics serves (bootstrap adds the deployment's lag and backlog)
    metrics: MetricsEndpoint | None = None
    #: the live streams' source (GET /v1/notifications/stream); without it the route is absent
    streams: StatusStreams | None = None
    #: the clock of the account limits' token buckets and quota reads (tests move it)
    clock: Callable[[], float] = time.monotonic


_json = json_response


def callback_signature_check(config: ApiConfig) -> SignatureCheck:
    """Whether a status callback is signed by one of our providers' tokens."""
    tokens = (config.twilio_auth_token, *config.other_auth_tokens)

    def signature_ok(query: str, params: dict[str, str], signature: str) -> bool:
        # the provider signs the exact URL it was given, per-notification query included
        url = config.status_callback_url + (f"?{query}" if query else "")
        return any(is_valid_signature(token, url, params, signature) for token in tokens)

    return signature_ok


def create_app(store: SqlStore, config: ApiConfig) -> FastAPI:  # noqa: PLR0915  # the routes
    """The FastAPI application; the store is started and stopped by the caller."""
    # /docs and /redoc load Swagger UI and ReDoc from Pigeon itself, not from a CDN,
    # so they work offline and behind a strict Content-Security-Policy
    app = FastAPIOffline(
        static_url="/docs-assets",
        # no 307 from /v1/notifications/%2F to a path that 404s anyway: answer the 404
        redirect_slashes=False,
        title="Pigeon",
        version=__version__,
        description="Event-driven notifications: accepted in milliseconds, delivered at least "
        "once, observable to the end.",
    )
    app.state.store = store
    quota = app.state.quota = QuotaGuard(store, config.clock)  # monthly segment quotas
    problems.install(app)
    signature_ok = callback_signature_check(config)

    @app.post(
        "/v1/notifications",
        status_code=202,
        response_model=NotificationAccepted,
        summary="Send a notification",
        responses=problems.documented(*problems.AUTHENTICATED, 400, 403, 409),
    )
    async def send_notification(
        request: SendNotification,
        account: AccountDep,
        http: Request,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                description="Makes retries safe: the same key and body within "
                "the retention period (24 h by default) get the first answer and the same id.",
            ),
        ] = None,
    ) -> Response:
        notification = new_notification(request, account.id)
        await quota.admit(account, notification.segments)
        answer = accepted_answer(notification)
        if idempotency_key is None:
            # the trace it continues, if any (pigeon.tracing)
            await tracing.traced_accept(store.accept, notification, dict(http.scope["headers"]))
            return _json(answer, 202, {"Location": f"/v1/notifications/{notification.id}"})
        claim = IdempotentRequest(
            account_id=account.id,
            key=check_idempotency_key(idempotency_key),
            request_hash=request_hash(request),
            response=orjson.dumps(answer).decode(),
        )
        first = await tracing.traced_accept(
            lambda n: store.accept_idempotent(n, claim), notification, dict(http.scope["headers"])
        )
        if first is None:
            return _json(answer, 202, {"Location": f"/v1/notifications/{notification.id}"})
        if first.request_hash != claim.request_hash:
            raise ConflictError(
                f"Idempotency-Key {claim.key!r} was already used with a different request "
                f"body (notification {first.notification_id}); use a new key for a new request"
            )
        return Response(
            first.response,
            status_code=202,
            media_type="application/json",
            headers={
                "Location": f"/v1/notifications/{first.notification_id}",
                "Idempotent-Replayed": "true",
            },
        )

    @app.get(
        "/v1/notifications",
        response_model=NotificationPage,
        summary="List and search notifications, newest first",
        description=(
            "Filters combine (all must hold). Add `metadata.<key>=<value>` for each metadata "
            "key that must have exactly that string value. Pages follow `next`: pass it as "
            "`cursor` with the same filters; a page never repeats or skips a notification "
            "while new ones arrive."
        ),
        responses=problems.documented(*problems.AUTHENTICATED, 400),
    )
    async def list_notifications(
        request: Request,
        account: AccountDep,
        *,
        status: Annotated[
            NotificationStatus | None, Query(description="Only notifications in this status.")
        ] = None,
        to: Annotated[str | None, Query(description="Only those to this number (E.164).")] = None,
        since: Annotated[
            datetime | None, Query(description="Created at or after (ISO 8601, with a zone).")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="Created before (ISO 8601, with a zone).")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 50,
        cursor: Annotated[
            str | None, Query(description="The `next` of the previous page.", max_length=200)
        ] = None,
    ) -> Response:
        filt = listing_filter(request, status=status, to=to, since=since, until=until)
        after = Cursor.decode(cursor) if cursor is not None else None
        page = await store.list_notifications(account.id, filt, limit=limit + 1, after=after)
        more = len(page) > limit
        page = page[:limit]
        last = page[-1].notification if more else None
        following = Cursor(last.created_at, last.id).encode() if last is not None else None
        return _json(page_body((page, following)))

    if config.streams is not None:  # before /v1/notifications/{id}, which would take 'stream'
        app.include_router(config.streams.router(store))
    app.include_router(limits_router())  # GET /v1/usage/quota

    @app.get(
        "/v1/notifications/{notification_id}",
        response_model=NotificationDetail,
        summary="A notification's status and timeline",
        responses=problems.documented(*problems.AUTHENTICATED, 404),
    )
    async def get_notification(notification_id: str, account: AccountDep) -> Response:
        view = (
            await store.get_view(account.id, notification_id)
            if could_be_our_id(notification_id)
            else None
        )
        if view is None:
            raise NotFoundError(f"no notification {notification_id!r} in this account")
        return _json(detail_body(view))

    @app.get(
        "/v1/usage",
        response_model=list[UsageItem],
        summary="SMS usage per day",
        responses=problems.documented(*problems.AUTHENTICATED),
    )
    async def get_usage(
        account: AccountDep,
        from_: Annotated[date, Query(alias="from", description="First day, YYYY-MM-DD (UTC)")],
        to: Annotated[date, Query(description="Last day, YYYY-MM-DD (UTC), inclusive")],
    ) -> Response:
        days = await store.usage(account.id, from_, to)
        return _json([usage_item(d) for d in days])

    @app.post(
        TWILIO_STATUS_PATH,
        summary="Twilio status callbacks",
        include_in_schema=True,
        responses=problems.documented(*problems.ALWAYS, 400, 403, 503),
    )
    async def twilio_status(request: Request) -> Response:
        raw = await request.body()
        params = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        signature = request.headers.get("x-twilio-signature", "")
        if not signature_ok(request.url.query, params, signature):
            log.warning("rejected a status callback with a bad X-Twilio-Signature")
            return problems.problem(403, "invalid X-Twilio-Signature")
        refusal = callback_refusal(params)
        if refusal is not None:
            return problems.problem(400, refusal)
        if not await store.record_delivery_report(
            tracing.traced_report(report_from_callback(params), request.url.query)
        ):
            log.info("status callback for a message id we have not recorded yet; kept")
        return Response(status_code=200)

    @app.get("/healthz", summary="Liveness", responses=problems.documented(*problems.ALWAYS))
    async def healthz() -> Response:
        return _json({"status": "ok", "version": __version__})

    @app.get(
        "/readyz",
        summary="Readiness: the store and the broker answer",
        responses=problems.documented(*problems.ALWAYS, 503),
    )
    async def readyz() -> Response:
        try:
            await store.ping()
            for check in config.ready_checks:
                await check()
        except PigeonError as exc:
            return problems.problem(503, str(exc))
        return _json({"status": "ready"})

    console = console_router(store, config.console or ConsoleOptions())  # /console
    for router in (actions_router(), admin_router(), keys_router(), webhooks_router(), console):
        app.include_router(router)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=config.max_request_bytes,
        per_path={BATCH_PATH: config.max_batch_bytes},
    )
    app.add_middleware(
        FastPath,
        store=store,
        status_path=TWILIO_STATUS_PATH,
        signature_ok=signature_ok,
        max_bytes=config.max_request_bytes,
        quota=quota,
    )
    app.add_middleware(AccountRateLimit, store=store, limiter=RateLimiter(config.clock))
    # GET /metrics and each request's duration, outside the fast path (counted too);
    # tracing outermost when on: a server span around the fast path too
    return tracing.instrument(
        install_metrics(app, config.metrics or MetricsEndpoint()), query_paths=(TWILIO_STATUS_PATH,)
    )


#: the query parameters of GET /v1/notifications besides metadata.<key>
_LIST_PARAMS = frozenset({"status", "to", "since", "until", "limit", "cursor"})
_METADATA = "metadata."


def listing_filter(
    request: Request,
    *,
    status: NotificationStatus | None,
    to: str | None,
    since: datetime | None,
    until: datetime | None,
) -> NotificationFilter:
    """The filter a listing asks for; an unknown parameter or a bad value is a 400/422
    naming it (a typo must not silently list everything)."""
    metadata: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name.startswith(_METADATA):
            key = name.removeprefix(_METADATA)
            if not key or len(key) > 64 or any(c in key for c in '"\\') or not key.isprintable():
                raise ValidationError(
                    name, "a metadata key is 1 to 64 printable characters, no quote or backslash"
                )
            if key in metadata:
                raise ValidationError(name, "is given twice")
            metadata[key] = value
        elif name not in _LIST_PARAMS:
            raise ValidationError(
                name,
                "is not a filter; use status, to, since, until, limit, cursor or metadata.<key>",
            )
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise ValidationError(name, "needs a time zone, e.g. 2026-11-30T10:00:00Z")
    return NotificationFilter(
        status=status,
        to=normalize_e164(to, "to") if to is not None else None,
        since=since,
        until=until,
        metadata=metadata,
    )
