"""A retention pass deletes exactly what has expired, on SQLite and on PostgreSQL.

The store here is what the Kafka stack has (events go to the outbox), so the
pass runs without a log of its own to compact; the embedded log's part is in
``tests/integration/services/test_retention_service.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, update

from pigeon.bus.port import Message, dead_letter_headers
from pigeon.domain.delivery import DeliveryReport, ReportedStatus
from pigeon.domain.events import (
    TOPIC_SMS_DEAD,
    TOPIC_SMS_REQUESTED,
    Event,
    SmsDelivered,
    SmsFailed,
    SmsRequested,
    SmsSending,
    SmsSent,
    encode,
    utcnow,
)
from pigeon.domain.ids import EVENT_PREFIX, NOTIFICATION_PREFIX, ulid
from pigeon.domain.notification import Account, Notification
from pigeon.services.projector import STATUS_GROUP, USAGE_GROUP
from pigeon.services.retention import Retention, RetentionPolicy
from pigeon.store.attempts import AttemptResult
from pigeon.store.engine import DatabaseUrl
from pigeon.store.idempotency import IdempotentRequest
from pigeon.store.schema import (
    dead_letters,
    idempotency_keys,
    notifications,
    pending_callbacks,
    processed_events,
    send_attempts,
    timeline,
    usage_daily,
)
from pigeon.store.sql_store import SqlStore

TO = "+14155550123"
#: the defaults: the log kept a day (records of events a day and an hour), notifications 30 days
POLICY = RetentionPolicy(log_retention=timedelta(hours=24), notification_retention=timedelta(30))


@pytest.fixture
async def store(database: DatabaseUrl) -> AsyncIterator[SqlStore]:
    """A started store (one worker process's)."""
    store = SqlStore(database, outbox=True, auto_migrate=True)
    await store.start()
    yield store
    await store.stop()


@pytest.fixture
def db(database: DatabaseUrl, store: SqlStore) -> Iterator[Engine]:
    """A plain connection to the same database, to look at the tables and set the clock back."""
    engine = create_engine(database.sqlalchemy_url(asynchronous=False))
    yield engine
    engine.dispose()


def ago(**delta: float) -> datetime:
    """A moment that long before now."""
    return utcnow() - timedelta(**delta)


def made_at(prefix: str, moment: datetime) -> str:
    """An id as one made at ``moment`` looks (ids are ULIDs: they carry their time)."""
    return prefix + ulid(int(moment.timestamp() * 1000))


def column(db: Engine, col: Any, *where: Any) -> list[Any]:
    """The values of one column, sorted."""
    with db.connect() as conn:
        return sorted(conn.execute(select(col).where(*where)).scalars())


def count(db: Engine, table: Any, *where: Any) -> int:
    """How many rows of ``table`` match."""
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def set_back(db: Engine, col: Any, moment: datetime, *where: Any) -> None:
    """Pretend the matching rows were written at ``moment``."""
    with db.begin() as conn:
        conn.execute(update(col.table).where(*where).values({col.name: moment}))


async def notification(
    store: SqlStore, account: Account, *, made: datetime, final: type[Event] | None
) -> Notification:
    """A notification accepted at ``made``, sent (journaled), and then ``final`` if given;
    every event at ``made``, with an id of then."""
    fresh = Notification.new_sms(account_id=account.id, to=TO, body="hello")
    n = dataclasses.replace(fresh, id=made_at(NOTIFICATION_PREFIX, made), created_at=made)
    await store.accept(n)
    await store.begin_attempts([(n.id, "twilio")], lambda starts: [])
    await store.finish_attempts([AttemptResult(n.id, 1, "sent", f"SM{n.id}")], [])
    common: dict[str, Any] = {
        "account_id": account.id,
        "notification_id": n.id,
        "occurred_at": made,
    }
    events: list[Event] = [
        SmsSending(**common, attempt=1, provider="twilio"),
        SmsSent(**common, attempt=1, provider="twilio", provider_message_id=f"SM{n.id}"),
    ]
    if final is SmsDelivered:
        events.append(SmsDelivered(**common, provider_message_id=f"SM{n.id}"))
    elif final is SmsFailed:
        events.append(SmsFailed(**common, reason="retries exhausted"))
    events = [dataclasses.replace(e, event_id=made_at(EVENT_PREFIX, made)) for e in events]
    await store.project_status(STATUS_GROUP, events)
    return n


def request(n: Notification, made: datetime) -> SmsRequested:
    """``n``'s request event, as written at ``made``."""
    return dataclasses.replace(
        n.requested_event(), event_id=made_at(EVENT_PREFIX, made), occurred_at=made
    )


def dead_letter(event: SmsRequested, offset: int) -> Message:
    """``event`` as the sender dead-lettered it."""
    original = Message(TOPIC_SMS_REQUESTED, 0, offset, event.to, encode(event))
    headers = dead_letter_headers(original, "retries exhausted", "sms-sender")
    return Message(TOPIC_SMS_DEAD, 0, offset, event.to, encode(event), headers)


async def claim_key(store: SqlStore, account: Account, key: str) -> None:
    """Accept a notification with an ``Idempotency-Key``."""
    n = Notification.new_sms(account_id=account.id, to=TO, body=key)
    claimed = IdempotentRequest(account.id, key, "0" * 64, "{}")
    assert await store.accept_idempotent(n, claimed) is None


async def test_a_pass_deletes_what_has_expired_and_nothing_else(
    store: SqlStore, db: Engine
) -> None:
    """Old final notifications, old event records, unclaimed callbacks and expired keys go;
    the rest stays: notifications not final, recent or dead-lettered, usage, dead letters."""
    account = await store.ensure_account("acme")
    long_ago = ago(days=40)
    # Given notifications: old and delivered, old but still 'sent', recent, old and dead
    gone = await notification(store, account, made=long_ago, final=SmsDelivered)
    stuck = await notification(store, account, made=long_ago, final=None)
    recent = await notification(store, account, made=utcnow(), final=SmsDelivered)
    dead = await notification(store, account, made=long_ago, final=SmsFailed)
    # and the meter's records: an old request, a recent one, and the dead one (not replayed)
    dead_request = request(dead, long_ago)
    await store.meter_usage(
        USAGE_GROUP, [request(gone, long_ago), request(recent, utcnow()), dead_request]
    )
    await store.record_dead_letters([dead_letter(dead_request, offset=1)])
    # and a callback nobody claimed for three days, and one from just now
    for sid in ("SMold", "SMnew"):
        assert not await store.record_delivery_report(DeliveryReport(sid, ReportedStatus.DELIVERED))
    set_back(db, pending_callbacks.c.received_at, ago(days=3), pending_callbacks.c.id > 0)
    await store.record_delivery_report(DeliveryReport("SMnew2", ReportedStatus.DELIVERED))
    # and an idempotency key past its 24 h, and a live one
    await claim_key(store, account, "expired")
    set_back(db, idempotency_keys.c.created_at, ago(hours=25), idempotency_keys.c.key == "expired")
    await claim_key(store, account, "live")
    records = set(column(db, processed_events.c.event_id))
    old_records = {e for e in records if e < made_at(EVENT_PREFIX, ago(hours=25, minutes=1))}
    usage = column(db, usage_daily.c.messages)
    n_notifications = count(db, notifications)

    # When a pass runs
    counts = await Retention(store, None, POLICY).sweep()

    # Then exactly the expired rows are gone
    assert counts == {
        "processed_events": len(old_records) - 1,
        "pending_callbacks": 2,
        "idempotency_keys": 1,
        "notifications": 1,
    }
    assert not count(db, notifications, notifications.c.id == gone.id)
    assert not count(db, timeline, timeline.c.notification_id == gone.id)
    assert not count(db, send_attempts, send_attempts.c.notification_id == gone.id)
    assert count(db, notifications) == n_notifications - 1
    for kept in (stuck, recent, dead):  # its steps after the first (that one is the row)
        assert count(db, timeline, timeline.c.notification_id == kept.id) >= 2
        assert count(db, send_attempts, send_attempts.c.notification_id == kept.id) == 1
    assert set(column(db, processed_events.c.event_id)) == (records - old_records) | {
        dead_request.event_id  # a replay publishes it again, with this id
    }
    assert column(db, pending_callbacks.c.provider_message_id) == ["SMnew2"]
    assert column(db, idempotency_keys.c.key) == ["live"]
    assert column(db, usage_daily.c.messages) == usage
    assert count(db, dead_letters) == 1


async def test_a_redelivered_event_inside_the_window_is_still_counted_once(
    store: SqlStore, db: Engine
) -> None:
    """After a pass forgot an old event, a recent event delivered again still counts once."""
    account = await store.ensure_account("acme")
    fresh = Notification.new_sms(account_id=account.id, to=TO, body="hello")
    recent, old = request(fresh, utcnow()), request(fresh, ago(days=3))
    assert await store.meter_usage(USAGE_GROUP, [old, recent]) == 2

    counts = await Retention(store, None, POLICY).sweep()
    assert counts["processed_events"] == 1
    assert column(db, processed_events.c.event_id) == [recent.event_id]

    assert await store.meter_usage(USAGE_GROUP, [recent]) == 0
    assert column(db, usage_daily.c.messages, usage_daily.c.day == recent.occurred_at.date()) == [1]


async def test_a_pass_with_nothing_expired_deletes_nothing_and_says_nothing(
    store: SqlStore, db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Only recent rows: every count is zero, every row stays, no INFO line."""
    account = await store.ensure_account("acme")
    n = await notification(store, account, made=utcnow(), final=SmsDelivered)
    await store.meter_usage(USAGE_GROUP, [request(n, utcnow())])
    await store.record_delivery_report(DeliveryReport("SMx", ReportedStatus.DELIVERED))
    await claim_key(store, account, "live")
    before = {t.name: count(db, t) for t in (notifications, timeline, processed_events)}

    with caplog.at_level(logging.INFO, logger="pigeon.services.retention"):
        counts = await Retention(store, None, POLICY).sweep()
        assert await Retention(store, None, POLICY).sweep() == counts

    assert set(counts.values()) == {0}
    assert {t.name: count(db, t) for t in (notifications, timeline, processed_events)} == before
    assert count(db, pending_callbacks) == count(db, idempotency_keys) == 1
    assert not [r for r in caplog.records if "retention pass" in r.getMessage()]


async def test_more_rows_than_one_chunk_are_all_deleted_chunk_by_chunk(
    store: SqlStore, db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Chunks of 10 rows: one chunk deletes 10; a pass deletes all 35 records, 25 callbacks,
    12 keys and 3 notifications (one per chunk: each takes its timeline and attempts along)."""
    account = await store.ensure_account("acme")
    fresh = Notification.new_sms(account_id=account.id, to=TO, body="hello")
    await store.meter_usage("meter-a", [request(fresh, ago(days=2)) for _ in range(20)])
    await store.meter_usage("meter-b", [request(fresh, ago(days=2)) for _ in range(15)])
    for i in range(25):
        await store.record_delivery_report(DeliveryReport(f"SM{i}", ReportedStatus.DELIVERED))
    set_back(db, pending_callbacks.c.received_at, ago(days=3), pending_callbacks.c.id > 0)
    for i in range(12):
        await claim_key(store, account, f"key-{i}")
    set_back(db, idempotency_keys.c.created_at, ago(days=2), idempotency_keys.c.key != "")
    for _ in range(3):
        await notification(store, account, made=ago(days=31), final=SmsDelivered)

    # one chunk is bounded
    assert await store.purge_processed_events(before=ago(days=1), limit=10) == 10
    assert count(db, processed_events, processed_events.c.consumer != STATUS_GROUP) == 25

    policy = dataclasses.replace(POLICY, chunk_rows=10, pause_seconds=0.001)
    with caplog.at_level(logging.INFO, logger="pigeon.services.retention"):
        counts = await Retention(store, None, policy).sweep()

    assert counts == {
        "processed_events": 25 + 3 * 3,  # and the projector's records of the 3 notifications
        "pending_callbacks": 25,
        "idempotency_keys": 12,
        "notifications": 3,
    }
    assert count(db, processed_events) == count(db, pending_callbacks) == 0
    assert count(db, idempotency_keys) == 0
    assert count(db, notifications) == 12  # the ones the keys were claimed with: recent
    (line,) = [r.getMessage() for r in caplog.records if "retention pass" in r.getMessage()]
    assert "processed_events=34" in line
    assert "notifications=3" in line


async def test_two_workers_purging_at_once_delete_each_row_once(
    database: DatabaseUrl, store: SqlStore, db: Engine
) -> None:
    """Two processes' passes overlap: together they delete every expired row, nothing fails."""
    account = await store.ensure_account("acme")
    fresh = Notification.new_sms(account_id=account.id, to=TO, body="hello")
    for _ in range(3):
        await store.meter_usage(USAGE_GROUP, [request(fresh, ago(days=2)) for _ in range(100)])
    for _ in range(8):
        await notification(store, account, made=ago(days=31), final=SmsDelivered)
    other = SqlStore(database, outbox=True)
    await other.start()
    try:
        policy = dataclasses.replace(POLICY, chunk_rows=16, pause_seconds=0.001)
        first, second = await asyncio.gather(
            Retention(store, None, policy).sweep(), Retention(other, None, policy).sweep()
        )
    finally:
        await other.stop()

    # the meter's 300 records, and the projector's 3 of each notification
    assert first["processed_events"] + second["processed_events"] == 300 + 8 * 3
    assert first["notifications"] + second["notifications"] == 8
    assert count(db, processed_events) == count(db, notifications) == 0
