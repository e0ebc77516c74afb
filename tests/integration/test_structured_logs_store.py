"""One INFO line per notification at its final state, logged once after the commit (both
dialects): redelivered and repeated events, a cancel, several notifications in one batch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pigeon.domain.events import (
    Event,
    SmsDelivered,
    SmsFailed,
    SmsSending,
    SmsSent,
    SmsUndelivered,
)
from pigeon.domain.notification import Notification
from pigeon.services.projector import STATUS_GROUP
from pigeon.store.engine import DatabaseUrl
from pigeon.store.sql_store import SqlStore
from tests.integration.postgres import fresh_schema

FINAL_LOGGER = "pigeon.notifications"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseUrl]:
    """An empty database of each dialect: a new SQLite file or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield DatabaseUrl.parse(f"sqlite:///{tmp_path / 'pigeon.db'}")
        return
    with fresh_schema() as url:
        yield DatabaseUrl.parse(url)


@pytest.fixture
async def store(database: DatabaseUrl) -> AsyncIterator[SqlStore]:
    """A started store as a Kafka-stack process has it (events go to the outbox)."""
    store = SqlStore(database, outbox=True, auto_migrate=True)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


@pytest.fixture(autouse=True)
def _final_lines_captured(caplog: pytest.LogCaptureFixture) -> None:
    """The final-state lines are captured whatever the logger's configured level."""
    caplog.set_level(logging.INFO, logger=FINAL_LOGGER)


def _finals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == FINAL_LOGGER]


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: getattr(record, key, None)
        for key in ("notification_id", "account_id", "status", "attempts", "provider")
    } | {"message": record.getMessage(), "level": record.levelname}


async def _accepted(store: SqlStore, to: str = "+14155550123") -> Notification:
    account = await store.ensure_account("acme")
    notification = Notification.new_sms(account_id=account.id, to=to, body="hi")
    await store.accept(notification)
    return notification


def _ids(n: Notification) -> dict[str, str]:
    return {"account_id": n.account_id, "notification_id": n.id}


def _sent(n: Notification, attempt: int = 1) -> list[Event]:
    return [
        SmsSending(**_ids(n), attempt=attempt, provider="backup"),
        SmsSent(**_ids(n), attempt=attempt, provider="backup", provider_message_id=f"SM{n.id}"),
    ]


async def test_a_delivered_notification_is_one_line_however_often_its_report_comes(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The delivery is logged with its ids as fields; a redelivered or repeated report
    adds no line."""
    # Given a notification sent on its second attempt
    n = await _accepted(store)
    await store.project_status(STATUS_GROUP, _sent(n, attempt=2))
    assert _finals(caplog) == []
    # When it is delivered
    delivered = SmsDelivered(**_ids(n), provider_message_id=f"SM{n.id}")
    await store.project_status(STATUS_GROUP, [delivered])
    # Then there is one line, with the notification's ids, status, attempts and provider
    assert [_fields(r) for r in _finals(caplog)] == [
        {
            "notification_id": n.id,
            "account_id": n.account_id,
            "status": "delivered",
            "attempts": 2,
            "provider": "backup",
            "message": "notification delivered",
            "level": "INFO",
        }
    ]
    # And the same event redelivered, or the provider reporting it again, adds none
    await store.project_status(STATUS_GROUP, [delivered])
    again = SmsDelivered(**_ids(n), provider_message_id=f"SM{n.id}")
    await store.project_status(STATUS_GROUP, [again])
    late = SmsUndelivered(**_ids(n), provider_message_id=f"SM{n.id}")
    await store.project_status(STATUS_GROUP, [late])
    assert len(_finals(caplog)) == 1


async def test_every_notification_a_batch_makes_final_gets_its_own_line(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    """One batch ends three notifications three ways; one not final gets no line."""
    done = [await _accepted(store, f"+1415555{i:04d}") for i in range(4)]
    events: list[Event] = [e for n in done for e in _sent(n)]
    events += [
        SmsDelivered(**_ids(done[0]), provider_message_id=f"SM{done[0].id}"),
        SmsUndelivered(**_ids(done[1]), provider_message_id=f"SM{done[1].id}", error_code=30005),
        SmsFailed(**_ids(done[2]), reason="rejected: unsubscribed", attempts=1),
    ]
    await store.project_status(STATUS_GROUP, events)
    assert sorted(
        (getattr(r, "notification_id", None), getattr(r, "status", None)) for r in _finals(caplog)
    ) == sorted([(done[0].id, "delivered"), (done[1].id, "undelivered"), (done[2].id, "failed")])


async def test_a_canceled_notification_is_one_line_without_a_provider(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Canceling logs the final line at once; canceling again logs nothing."""
    n = await _accepted(store)
    assert await store.cancel(n.account_id, n.id, projector=STATUS_GROUP)
    assert not await store.cancel(n.account_id, n.id, projector=STATUS_GROUP)
    assert [_fields(r) for r in _finals(caplog)] == [
        {
            "notification_id": n.id,
            "account_id": n.account_id,
            "status": "canceled",
            "attempts": 0,
            "provider": None,
            "message": "notification canceled",
            "level": "INFO",
        }
    ]
