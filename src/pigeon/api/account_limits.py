"""Per-account limits in the API: a request rate and a monthly segment quota.

**Rate** (``pigeon accounts set-limits NAME --rate N [--burst B]``): a token
bucket per account in each API process, holding ``B`` requests (default ``N``)
and refilled at ``N`` per second. Every authenticated ``/v1`` request takes one;
with none left the answer is ``429`` problem+json with ``Retry-After``, and
nothing else happens. Every answer to a limited account carries the IETF
``RateLimit-Policy`` and ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers),
e.g. ``RateLimit-Policy: "rate";q=50;w=1`` and ``RateLimit: "rate";r=49;t=1``.
The bucket lives in the API process: with several API processes behind a load
balancer, each allows the account's rate.

**Quota** (``--monthly-segments N``): SMS segments per calendar month (UTC), as
the usage meter counts them. A send (or a batch item) whose segments would
pass it is refused with ``403`` naming the quota and when it resets; nothing is
stored. The month's usage is read at most once a second per account and what
this process accepted since is added, so the quota can be passed only by what
arrives within the usage meter's lag (normally well under a second).

Accounts without limits cost one attribute check per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pigeon.api import problems
from pigeon.api.deps import AccountDep, bearer_key, json_response
from pigeon.api.problems import PROBLEM_JSON, problem_body
from pigeon.domain.notification import Account, AccountLimits
from pigeon.errors import PermissionDenied, PigeonError
from pigeon.store.sql_store import SqlStore

#: header fields of an answer, as ASGI sends them
Fields = list[tuple[bytes, bytes]]
#: where this middleware leaves the caller's account in the ASGI scope (for the fast path)
ACCOUNT_SCOPE_KEY = "pigeon.account"
#: the policy's name in the RateLimit fields
POLICY = "rate"
#: how long the month's usage read from the store is trusted
QUOTA_REFRESH_SECONDS = 1.0


class QuotaExceeded(PermissionDenied):
    """The account's monthly segment quota does not cover this send (HTTP 403)."""


@dataclass
class _Bucket:
    tokens: float
    at: float
    rate: int
    size: int


class RateLimiter:
    """Token buckets per account (one event loop; no lock needed)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, account_id: str, limits: AccountLimits) -> tuple[bool, Fields]:
        """Take one request's token: (allowed, the RateLimit header fields to answer with).

        Refused, the fields include ``Retry-After``: whole seconds until a token is back.
        """
        rate, size = limits.rate_per_second or 1, limits.burst
        now = self._clock()
        bucket = self._buckets.get(account_id)
        if bucket is None or (bucket.rate, bucket.size) != (rate, size):
            bucket = self._buckets[account_id] = _Bucket(float(size), now, rate, size)
        bucket.tokens = min(float(size), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        remaining = int(bucket.tokens)
        full_in = math.ceil((size - bucket.tokens) / rate)
        window = max(1, math.ceil(size / rate))
        fields = [
            (b"ratelimit-policy", f'"{POLICY}";q={size};w={window}'.encode()),
            (b"ratelimit", f'"{POLICY}";r={remaining};t={full_in}'.encode()),
        ]
        if not allowed:
            wait = max(1, math.ceil((1.0 - bucket.tokens) / rate))
            fields.append((b"retry-after", str(wait).encode()))
        return allowed, fields


def month_start(moment: datetime) -> date:
    """The first day of ``moment``'s calendar month (UTC)."""
    return moment.astimezone(UTC).date().replace(day=1)


def next_month(moment: datetime) -> datetime:
    """When the quota of ``moment``'s month resets: the next month's first midnight, UTC."""
    first = month_start(moment)
    year, month = (first.year + 1, 1) if first.month == 12 else (first.year, first.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


@dataclass
class _Usage:
    month: date
    read_at: float
    metered: int
    #: segments this process accepted since ``metered`` was read
    added: int = 0


class QuotaGuard:
    """Checks sends against the account's monthly segment quota."""

    def __init__(
        self,
        store: SqlStore,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store, self._clock, self._now = store, clock, now
        self._usage: dict[str, _Usage] = {}

    async def used(self, account: Account) -> tuple[int, datetime]:
        """Segments counted against this month's quota, and when the month ends."""
        moment = self._now()
        month = month_start(moment)
        usage = self._usage.get(account.id)
        if (
            usage is None
            or usage.month != month
            or self._clock() - usage.read_at >= QUOTA_REFRESH_SECONDS
        ):
            metered = await self._store.segments_since(account.id, month)
            usage = self._usage[account.id] = _Usage(month, self._clock(), metered)
        return usage.metered + usage.added, next_month(moment)

    async def admit(self, account: Account, segments: int) -> None:
        """Count ``segments`` against the quota, or raise :class:`QuotaExceeded`."""
        limits = account.limits
        if limits is None or limits.monthly_segment_quota is None:
            return
        used, resets = await self.used(account)
        quota = limits.monthly_segment_quota
        if used + segments > quota:
            raise QuotaExceeded(
                f"monthly segment quota exceeded: {used:,} of {quota:,} used this month and "
                f"this needs {segments:,}; it resets at {resets:%Y-%m-%dT%H:%M:%SZ}"
            )
        self._usage[account.id].added += segments


class AccountRateLimit:
    """ASGI middleware: the rate limit of the account whose key a ``/v1`` request carries.

    Outside the fast path, so every route (and the fast path's sends) is limited.
    Requests without a known key pass on untouched: the route answers 401.
    """

    def __init__(self, app: ASGIApp, *, store: SqlStore, limiter: RateLimiter) -> None:
        self.app, self._store, self._limiter = app, store, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        key = bearer_key(scope)
        try:
            account = await self._store.authenticate(key) if key else None
        except PigeonError:  # the store is down: the route answers that (503), not us
            account = None
        if account is not None:  # the fast path reads it instead of looking the key up again
            scope[ACCOUNT_SCOPE_KEY] = account
        if account is None or account.limits is None or not account.limits.rate_per_second:
            await self.app(scope, receive, send)
            return
        allowed, fields = self._limiter.take(account.id, account.limits)
        if not allowed:
            body = orjson.dumps(
                problem_body(
                    429,
                    f"rate limit of {account.limits.rate_per_second} requests/s "
                    f"(burst {account.limits.burst}) reached; retry after the Retry-After seconds",
                )
            )
            headers = [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *fields,
            ]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return

        async def with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *fields]}
            await send(message)

        await self.app(scope, receive, with_fields)


def limits_router() -> APIRouter:
    """``GET /v1/usage/quota``: the account's limits and this month's use of its quota."""
    router = APIRouter()

    @router.get(
        "/v1/usage/quota",
        summary="This month's segments against the account's quota, and its rate limit",
        description=(
            "`monthly_segments`: the calendar month (UTC) so far as the usage meter counts "
            "it, with the quota, what remains of it and when it resets (`quota` and "
            "`remaining` are null when the account has no quota). `rate_limit`: requests "
            "per second and burst, or null. Set both with `pigeon accounts set-limits`."
        ),
        responses=problems.documented(*problems.AUTHENTICATED),
    )
    async def get_quota(request: Request, account: AccountDep) -> Response:
        guard: QuotaGuard = request.app.state.quota
        used, resets = await guard.used(account)
        limits = account.limits or AccountLimits()
        quota = limits.monthly_segment_quota
        rate = (
            {"requests_per_second": limits.rate_per_second, "burst": limits.burst}
            if limits.rate_per_second
            else None
        )
        return json_response(
            {
                "monthly_segments": {
                    "month": month_start(resets - timedelta(days=1)).strftime("%Y-%m"),
                    "used": used,
                    "quota": quota,
                    "remaining": max(0, quota - used) if quota is not None else None,
                    "resets_at": resets.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                "rate_limit": rate,
            }
        )

    return router
