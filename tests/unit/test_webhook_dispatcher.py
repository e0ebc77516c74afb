"""The webhook dispatcher's two loops against an in-memory queue and a scripted receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import orjson
from standardwebhooks import Webhook
from tests.support import eventually

from pigeon.bus.port import Message
from pigeon.domain.events import TOPIC_STATUS, SmsDelivered, SmsSent, encode, utcnow
from pigeon.domain.retry import RetryPolicy
from pigeon.domain.webhooks import new_secret, secret_key
from pigeon.services.webhook_dispatcher import (
    PostOutcome,
    SenderSettings,
    WebhookRecorder,
    WebhookSender,
)
from pigeon.store.webhook_rows import AttemptResult, DueDelivery, NewDelivery, Subscriber

SECRET = new_secret()


@dataclass
class Row:
    """One delivery in the fake queue."""

    seq: int
    new: NewDelivery
    state: str = "pending"
    attempts: int = 0
    due: datetime | None = field(default_factory=utcnow)
    error: str | None = None


class FakeQueue:
    """The store's webhook queue in memory, with the same ordering rule."""

    def __init__(self, subscribers: dict[str, list[Subscriber]] | None = None) -> None:
        self.subscribers_of = subscribers or {}
        self.lookups = 0
        self.rows: list[Row] = []
        self.disabled: list[tuple[str, str]] = []

    async def subscribers(self, account_ids: Iterable[str]) -> dict[str, list[Subscriber]]:
        self.lookups += 1
        return {a: self.subscribers_of[a] for a in account_ids if a in self.subscribers_of}

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> None:
        for d in deliveries:
            if not any(
                r.new.endpoint_id == d.endpoint_id and r.new.event_id == d.event_id
                for r in self.rows
            ):
                self.rows.append(Row(len(self.rows) + 1, d))

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[DueDelivery]:
        claimed = [r for r in self._heads() if r.due is not None and r.due <= now][:limit]
        for row in claimed:
            row.due = now + lease
        return [
            DueDelivery(
                r.seq,
                f"msg_{r.seq}",
                r.new.endpoint_id,
                "http://receiver",
                (secret_key(SECRET),),
                r.new.payload.encode(),
                r.attempts,
            )
            for r in claimed
        ]

    def _heads(self) -> list[Row]:
        heads: dict[tuple[str, str], Row] = {}
        for row in self.rows:
            key = (row.new.endpoint_id, row.new.notification_id)
            if row.state == "pending" and key not in heads:
                heads[key] = row
        return list(heads.values())

    async def next_due(self) -> datetime | None:
        dues = [r.due for r in self._heads() if r.due is not None]
        return min(dues) if dues else None

    async def finish(
        self, results: Sequence[AttemptResult], now: datetime, disable_after: timedelta
    ) -> list[tuple[str, str]]:
        for result in results:
            row = self.rows[result.seq - 1]
            row.attempts += 1 if result.counted else 0
            if result.delivered:
                row.state, row.due = "delivered", None
            elif result.gone:
                self.disabled.append((result.endpoint_id, "gone"))
                row.due = None
            elif result.next_attempt_at is None:
                row.state, row.due = "failed", None
            else:
                row.due = result.next_attempt_at
            row.error = result.error
        return []


class ScriptedPoster:
    """Answers each POST with the next scripted outcome (then 204), recording what came."""

    def __init__(self, *answers: PostOutcome) -> None:
        self.answers = list(answers)
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> PostOutcome:
        self.received.append((headers, body))
        return self.answers.pop(0) if self.answers else PostOutcome(204)


def _messages(*events: SmsSent | SmsDelivered) -> list[Message]:
    return [
        Message(topic=TOPIC_STATUS, partition=0, offset=i, key=e.notification_id, value=encode(e))
        for i, e in enumerate(events)
    ]


def _events(account: str = "acc_1", notification: str = "ntf_1") -> tuple[SmsSent, SmsDelivered]:
    sent = SmsSent(
        account_id=account,
        notification_id=notification,
        attempt=1,
        provider="twilio",
        provider_message_id="SM1",
    )
    delivered = SmsDelivered(
        account_id=account, notification_id=notification, provider_message_id="SM1"
    )
    return sent, delivered


SETTINGS = SenderSettings(
    policy=RetryPolicy(5, 0.01, 120), disable_after=timedelta(hours=1), timeout_seconds=1
)


async def test_an_account_without_endpoints_writes_nothing_and_is_looked_up_once_a_second() -> None:
    """No endpoint: no delivery row, and the look-up is cached between batches."""
    queue = FakeQueue()
    woken: list[int] = []
    now = [100.0]
    recorder = WebhookRecorder(queue, lambda: woken.append(1), clock=lambda: now[0])
    await recorder(_messages(*_events()))
    await recorder(_messages(*_events()))
    assert queue.rows == [] and woken == [] and queue.lookups == 1
    now[0] += 1.5
    await recorder(_messages(*_events()))
    assert queue.lookups == 2


async def test_each_wanting_endpoint_gets_one_delivery_without_body_or_number() -> None:
    """Event-type filters apply; a payload names the notification and status only."""
    queue = FakeQueue(
        {
            "acc_1": [
                Subscriber("whe_all", frozenset()),
                Subscriber("whe_d", frozenset({"SmsDelivered"})),
            ]
        }
    )
    recorder = WebhookRecorder(queue, lambda: None)
    sent, delivered = _events()
    await recorder(_messages(sent, delivered))
    await recorder(_messages(sent))  # the same event again: no second delivery
    assert [(r.new.endpoint_id, r.new.event_type) for r in queue.rows] == [
        ("whe_all", "SmsSent"),
        ("whe_all", "SmsDelivered"),
        ("whe_d", "SmsDelivered"),
    ]
    payload = orjson.loads(queue.rows[1].new.payload)
    assert payload["type"] == "notification.status"
    assert payload["data"]["notification_id"] == "ntf_1"
    assert payload["data"]["status"] == "delivered"
    assert "+1" not in queue.rows[1].new.payload


async def _run_until(sender: WebhookSender, done: Callable[[], bool]) -> None:
    task = asyncio.ensure_future(sender.run())
    try:
        await eventually(done, within=5)
    finally:
        sender.request_stop()
        await task


async def test_a_failing_receiver_gets_retries_and_a_later_status_waits_for_the_earlier() -> None:
    """Two failures, then delivered; the notification's second event goes only after its first."""
    queue = FakeQueue({"acc_1": [Subscriber("whe_1", frozenset())]})
    poster = ScriptedPoster(PostOutcome(500, "HTTP 500"), PostOutcome(None, "no answer"))
    sender = WebhookSender(queue, poster, SETTINGS)
    await WebhookRecorder(queue, sender.wake)(_messages(*_events()))

    await _run_until(sender, lambda: all(r.state == "delivered" for r in queue.rows))

    types = [orjson.loads(body)["data"]["type"] for _, body in poster.received]
    assert types == ["SmsSent", "SmsSent", "SmsSent", "SmsDelivered"]
    assert [r.attempts for r in queue.rows] == [3, 1]
    ids = [headers["webhook-id"] for headers, _ in poster.received]
    assert ids[:3] == ["msg_1"] * 3  # the same id on every retry
    for headers, body in poster.received:
        assert Webhook(SECRET).verify(body, headers)


async def test_retry_after_is_a_floor_and_410_gone_disables() -> None:
    """A 429 with Retry-After: 60 is not tried again sooner; a 410 reports the endpoint gone."""
    queue = FakeQueue(
        {"acc_1": [Subscriber("whe_1", frozenset())], "acc_2": [Subscriber("whe_2", frozenset())]}
    )
    poster = ScriptedPoster(
        PostOutcome(429, "HTTP 429", retry_after=60), PostOutcome(410, "HTTP 410")
    )
    sender = WebhookSender(queue, poster, SETTINGS)
    recorder = WebhookRecorder(queue, sender.wake)
    await recorder(_messages(_events()[0]))
    before = utcnow()
    await _run_until(sender, lambda: queue.rows[0].attempts == 1)
    assert queue.rows[0].due is not None and queue.rows[0].due >= before + timedelta(seconds=59)

    await recorder(_messages(_events("acc_2", "ntf_2")[0]))
    await _run_until(WebhookSender(queue, poster, SETTINGS), lambda: bool(queue.disabled))
    assert queue.disabled == [("whe_2", "gone")]


async def test_an_open_breaker_puts_deliveries_off_without_counting_an_attempt() -> None:
    """After N failures in a row the endpoint is not called until its cool-down ends."""
    settings = replace(SETTINGS, breaker_failure_threshold=2, breaker_reset_seconds=60)
    queue = FakeQueue({"acc_1": [Subscriber("whe_1", frozenset())]})
    poster = ScriptedPoster(*[PostOutcome(503, "HTTP 503")] * 10)
    sender = WebhookSender(queue, poster, settings)
    await WebhookRecorder(queue, sender.wake)(_messages(*_events()))
    await _run_until(sender, lambda: queue.rows[0].attempts == 2)
    await asyncio.sleep(0.2)  # part of the scenario: time in which retries would come
    assert len(poster.received) == 2 and queue.rows[0].attempts == 2
