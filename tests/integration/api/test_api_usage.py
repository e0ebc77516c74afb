"""GET /v1/usage: validation, zero-filled days, and counts from the real usage meter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date

import httpx
import pytest
from api_testkit import PROBLEM_JSON, StoredEvent, Tenant
from tests.integration.kafka_reader import read_topic
from tests.support import eventually

from pigeon.bootstrap import RELAY, Pigeon, Runner
from pigeon.bus.kafka import KafkaEventBus
from pigeon.domain.events import TOPIC_SMS_REQUESTED, SmsRequested, decode
from pigeon.services.projector import USAGE_GROUP


@pytest.fixture
async def usage_meter(pigeon: Pigeon) -> AsyncIterator[list[Runner]]:
    """The real usage-meter worker loops (and, with Kafka, the outbox relay) as tasks."""
    meters = await pigeon.workers("usage-meter")
    relays = await pigeon.workers(RELAY) if RELAY in pigeon.all_workers() else []
    runners: list[Runner] = [*meters, *relays]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    await asyncio.wait_for(asyncio.gather(*(r.started.wait() for r in meters)), 20)
    try:
        yield runners
    finally:
        for runner in runners:
            runner.request_stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)


async def _request_event(
    pigeon: Pigeon, events: Callable[[str], list[StoredEvent]], notification_id: str
) -> SmsRequested:
    """The notification's SmsRequested: from the event table, or (once relayed) from Kafka."""

    def found(values: Sequence[bytes]) -> list[SmsRequested]:
        decoded = [decode(v) for v in values]
        return [
            e
            for e in decoded
            if isinstance(e, SmsRequested) and e.notification_id == notification_id
        ]

    stored = found([e.value for e in events(TOPIC_SMS_REQUESTED)])
    if not stored and isinstance(pigeon.bus, KafkaEventBus):
        records = await read_topic(
            pigeon.bus.bootstrap_servers,
            TOPIC_SMS_REQUESTED,
            lambda got: bool(found([r.value for r in got])),
        )
        stored = found([r.value for r in records])
    [event] = stored
    return event


async def _send(client: httpx.AsyncClient, tenant: Tenant, body: str) -> dict[str, object]:
    response = await client.post(
        "/v1/notifications",
        json={"channel": "sms", "to": "+14155550123", "body": body},
        headers=tenant.headers,
    )
    assert response.status_code == 202
    return dict(response.json())


async def _usage(
    client: httpx.AsyncClient, tenant: Tenant, start: str, end: str
) -> list[dict[str, object]]:
    response = await client.get(
        "/v1/usage", params={"from": start, "to": end}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_days_without_usage_are_listed_with_zeros(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Every day of the range is present, in order, even when nothing was sent."""
    days = await _usage(client, tenant, "2026-02-27", "2026-03-02")
    assert days == [
        {"date": "2026-02-27", "messages": 0, "segments": 0},
        {"date": "2026-02-28", "messages": 0, "segments": 0},
        {"date": "2026-03-01", "messages": 0, "segments": 0},
        {"date": "2026-03-02", "messages": 0, "segments": 0},
    ]


async def test_a_one_day_range_has_one_entry(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """from == to is a valid, inclusive range of one day."""
    assert await _usage(client, tenant, "2026-01-01", "2026-01-01") == [
        {"date": "2026-01-01", "messages": 0, "segments": 0}
    ]


async def test_a_range_of_exactly_366_days_is_allowed(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The leap year 2024 in full is the longest range allowed."""
    days = await _usage(client, tenant, "2024-01-01", "2024-12-31")
    assert len(days) == 366
    assert (days[0]["date"], days[-1]["date"]) == ("2024-01-01", "2024-12-31")


INVALID_QUERIES = {
    "missing-both": ({}, "from"),
    "missing-from": ({"to": "2026-01-02"}, "from"),
    "missing-to": ({"from": "2026-01-02"}, "to"),
    "from-not-a-date": ({"from": "yesterday", "to": "2026-01-02"}, "from"),
    "to-not-a-date": ({"from": "2026-01-01", "to": "soon"}, "to"),
    "from-impossible-day": ({"from": "2026-02-30", "to": "2026-03-02"}, "from"),
    "to-impossible-month": ({"from": "2026-01-01", "to": "2026-13-01"}, "to"),
    "from-slashes": ({"from": "2026/01/01", "to": "2026-01-02"}, "from"),
    "from-empty": ({"from": "", "to": "2026-01-02"}, "from"),
    "to-before-from": ({"from": "2026-01-02", "to": "2026-01-01"}, "to"),
    "range-367-days": ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),
    "range-many-years": ({"from": "2000-01-01", "to": "2026-01-01"}, "to"),
}


@pytest.mark.parametrize(("params", "field"), INVALID_QUERIES.values(), ids=INVALID_QUERIES.keys())
async def test_an_invalid_usage_query_is_422_naming_the_parameter(
    client: httpx.AsyncClient, tenant: Tenant, params: dict[str, str], field: str
) -> None:
    """Missing, malformed, reversed or too-long ranges are 422 problem+json naming the field."""
    response = await client.get("/v1/usage", params=params, headers=tenant.headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == 422
    assert problem["detail"].startswith(f"{field}: ")
    assert problem["errors"][0]["field"] == field


async def test_the_usage_meter_counts_messages_and_segments_per_account(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    usage_meter: list[Runner],
) -> None:
    """Given 3 SMS for acme (1 + 2 + 3 segments) and 1 for globex, usage shows each its own."""
    first = await _send(client, tenant, "hello")
    await _send(client, tenant, "a" * 161)
    await _send(client, tenant, "\u0436" * 135)
    await _send(client, other_tenant, "hi")
    today = str(first["created_at"])[:10]

    async def metered() -> bool:
        # the two accounts' requests may sit in different partitions: wait for both
        ours = await _usage(client, tenant, today, today)
        theirs = await _usage(client, other_tenant, today, today)
        return ours[0]["messages"] == 3 and theirs[0]["messages"] == 1

    await eventually(metered)
    assert await _usage(client, tenant, today, today) == [
        {"date": today, "messages": 3, "segments": 6}
    ]
    assert await _usage(client, other_tenant, today, today) == [
        {"date": today, "messages": 1, "segments": 1}
    ]


async def test_usage_is_counted_on_the_day_the_request_was_accepted(
    client: httpx.AsyncClient, tenant: Tenant, usage_meter: list[Runner]
) -> None:
    """The neighbouring days of a metered message stay at zero."""
    sent = await _send(client, tenant, "hello")
    today = date.fromisoformat(str(sent["created_at"])[:10])
    yesterday = today.fromordinal(today.toordinal() - 1).isoformat()
    tomorrow = today.fromordinal(today.toordinal() + 1).isoformat()

    async def metered() -> bool:
        days = await _usage(client, tenant, today.isoformat(), today.isoformat())
        return days[0]["messages"] == 1

    await eventually(metered)
    days = await _usage(client, tenant, yesterday, tomorrow)
    assert [(d["messages"], d["segments"]) for d in days] == [(0, 0), (1, 1), (0, 0)]


async def test_a_redelivered_request_event_is_not_counted_twice(
    client: httpx.AsyncClient,
    tenant: Tenant,
    pigeon: Pigeon,
    events: Callable[[str], list[StoredEvent]],
) -> None:
    """Metering the same SmsRequested twice (at-least-once delivery) counts it once."""
    sent = await _send(client, tenant, "a" * 200)
    today = str(sent["created_at"])[:10]
    event = await _request_event(pigeon, events, str(sent["id"]))

    assert await pigeon.store.meter_usage(USAGE_GROUP, [event]) == 1
    assert await pigeon.store.meter_usage(USAGE_GROUP, [event]) == 0

    assert await _usage(client, tenant, today, today) == [
        {"date": today, "messages": 1, "segments": 2}
    ]


async def test_an_event_already_metered_by_the_worker_is_not_counted_again(
    client: httpx.AsyncClient,
    tenant: Tenant,
    pigeon: Pigeon,
    events: Callable[[str], list[StoredEvent]],
    usage_meter: list[Runner],
) -> None:
    """Given the worker metered a request, metering its event again changes nothing."""
    sent = await _send(client, tenant, "hello")
    today = str(sent["created_at"])[:10]

    async def metered() -> bool:
        return (await _usage(client, tenant, today, today))[0]["messages"] == 1

    await eventually(metered)
    event = await _request_event(pigeon, events, str(sent["id"]))

    assert await pigeon.store.meter_usage(USAGE_GROUP, [event]) == 0
    assert await _usage(client, tenant, today, today) == [
        {"date": today, "messages": 1, "segments": 1}
    ]
