"""Per-account limits on each stack: the request rate (429, RateLimit fields, Retry-After)
and the monthly segment quota (403 naming it), with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest
from api_testkit import AUTH_TOKEN, PROBLEM_JSON, Tenant
from sqlalchemy import Engine, insert
from tests.support import Clock

from pigeon.api.account_limits import RateLimiter, next_month
from pigeon.api.app import ApiConfig, create_app
from pigeon.bootstrap import Pigeon
from pigeon.domain.notification import AccountLimits
from pigeon.errors import NotFoundError, ValidationError
from pigeon.store.schema import usage_daily

SEND = {"channel": "sms", "to": "+14155550100", "body": "one segment"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def limited(pigeon: Pigeon, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """The real API on this store, its limits on the test's clock."""
    app = create_app(
        pigeon.store,
        ApiConfig(
            status_callback_url=pigeon.status_callback_url,
            twilio_auth_token=AUTH_TOKEN,
            clock=clock,
        ),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_a_rate_limited_account_gets_its_fields_then_a_429_that_stores_nothing(
    pigeon: Pigeon,
    tenant: Tenant,
    limited: httpx.AsyncClient,
    clock: Clock,
    row_counts: Callable[[], dict[str, int]],
) -> None:
    await pigeon.store.set_limits("acme", rate_per_second=1, rate_burst=2)
    first = await limited.post("/v1/notifications", json=SEND, headers=tenant.headers)
    second = await limited.post("/v1/notifications", json=SEND, headers=tenant.headers)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.headers["ratelimit-policy"] == '"rate";q=2;w=2'
    assert first.headers["ratelimit"] == '"rate";r=1;t=1'
    assert second.headers["ratelimit"] == '"rate";r=0;t=2'
    before = row_counts()

    refused = await limited.post("/v1/notifications", json=SEND, headers=tenant.headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.headers["retry-after"] == "1"
    assert "rate limit of 1 requests/s (burst 2)" in refused.json()["detail"]
    assert row_counts() == before  # nothing stored
    # every /v1 route counts, not only sends
    assert (await limited.get("/v1/usage/quota", headers=tenant.headers)).status_code == 429

    clock.now += 1.0  # one token back
    again = await limited.post("/v1/notifications", json=SEND, headers=tenant.headers)
    assert again.status_code == 202 and again.headers["ratelimit"] == '"rate";r=0;t=2'


async def test_an_account_without_limits_gets_no_fields_and_others_are_not_slowed(
    pigeon: Pigeon, tenant: Tenant, other_tenant: Tenant, limited: httpx.AsyncClient
) -> None:
    await pigeon.store.set_limits("acme", rate_per_second=1, rate_burst=1)
    assert (await limited.get("/v1/usage/quota", headers=tenant.headers)).status_code == 200
    assert (await limited.get("/v1/usage/quota", headers=tenant.headers)).status_code == 429
    for _ in range(5):  # another account's bucket is its own, and it has none
        answer = await limited.post("/v1/notifications", json=SEND, headers=other_tenant.headers)
        assert answer.status_code == 202 and "ratelimit" not in answer.headers


async def test_the_monthly_quota_refuses_sends_and_batch_items_past_it(
    pigeon: Pigeon,
    *,
    tenant: Tenant,
    limited: httpx.AsyncClient,
    clock: Clock,
    database: Engine,
    row_counts: Callable[[], dict[str, int]],
) -> None:
    await pigeon.store.set_limits("acme", monthly_segment_quota=3)
    for _ in range(2):
        assert (
            await limited.post("/v1/notifications", json=SEND, headers=tenant.headers)
        ).status_code == 202
    before = row_counts()
    two_segments = {**SEND, "body": "x" * 200}  # GSM-7: 2 segments
    over = await limited.post("/v1/notifications", json=two_segments, headers=tenant.headers)
    assert over.status_code == 403 and over.headers["content-type"] == PROBLEM_JSON
    detail = over.json()["detail"]
    assert "monthly segment quota exceeded: 2 of 3 used this month and this needs 2" in detail
    assert f"resets at {next_month(datetime.now(UTC)):%Y-%m-%dT%H:%M:%SZ}" in detail
    assert row_counts() == before

    # a batch: the item that fits is stored, the one past the quota is refused alone
    batch = await limited.post(
        "/v1/notifications:batch",
        json={"notifications": [SEND, SEND]},
        headers=tenant.headers,
    )
    assert batch.status_code == 207
    assert [r["status"] for r in batch.json()["results"]] == [202, 403]
    assert "monthly segment quota" in batch.json()["results"][1]["problem"]["detail"]

    quota = (await limited.get("/v1/usage/quota", headers=tenant.headers)).json()
    assert quota["monthly_segments"]["used"] == 3
    assert (quota["monthly_segments"]["quota"], quota["monthly_segments"]["remaining"]) == (3, 0)
    assert quota["rate_limit"] is None

    # what the usage meter counts is what the quota reads once its second is up
    with database.begin() as conn:
        conn.execute(
            insert(usage_daily).values(
                account_id=tenant.account.id,
                day=datetime.now(UTC).date(),
                messages=1,
                segments=1,
            )
        )
    clock.now += 1.0
    quota = (await limited.get("/v1/usage/quota", headers=tenant.headers)).json()
    assert (quota["monthly_segments"]["used"], quota["monthly_segments"]["remaining"]) == (1, 2)
    assert (
        await limited.post("/v1/notifications", json=SEND, headers=tenant.headers)
    ).status_code == 202

    # removing the quota lifts it at once in this process
    await pigeon.store.set_limits("acme", monthly_segment_quota=None)
    assert (
        await limited.post("/v1/notifications", json=two_segments, headers=tenant.headers)
    ).status_code == 202


async def test_bad_limits_are_refused_and_change_nothing(pigeon: Pigeon, tenant: Tenant) -> None:
    await pigeon.store.set_limits("acme", rate_per_second=5)
    with pytest.raises(ValidationError, match="rate_burst"):
        await pigeon.store.set_limits("acme", rate_per_second=9, rate_burst=0)
    with pytest.raises(NotFoundError, match="no account 'nobody'"):
        await pigeon.store.set_limits("nobody", rate_per_second=1)
    account = await pigeon.store.account_named("acme")
    assert account.limits == AccountLimits(5, None, None)


def test_the_token_bucket_refills_at_its_rate_up_to_its_size() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limits = AccountLimits(rate_per_second=10, rate_burst=20)
    taken = [limiter.take("acc", limits)[0] for _ in range(25)]
    assert taken == [True] * 20 + [False] * 5
    allowed, fields = limiter.take("acc", limits)
    assert not allowed and dict(fields)[b"retry-after"] == b"1"
    clock.now += 0.55  # 5.5 tokens
    assert [limiter.take("acc", limits)[0] for _ in range(6)] == [True] * 5 + [False]
    clock.now += 3600  # never more than the bucket holds
    assert sum(limiter.take("acc", limits)[0] for _ in range(30)) == 20
    # new limits start a new bucket
    assert limiter.take("acc", AccountLimits(rate_per_second=1))[0]
