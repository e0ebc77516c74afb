"""A notification's first timeline step is its own row (both dialects).

Accepting writes no timeline row: "accepted by the API" at ``created_at`` is read
from the notification itself, for one accepted alone, in a batch and with later
steps. A row stored for it by an older Pigeon is not shown a second time.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, insert, select

from pigeon.domain.events import SmsSending, SmsSent
from pigeon.domain.notification import Notification, NotificationView
from pigeon.services.projector import STATUS_GROUP
from pigeon.store.schema import timeline
from pigeon.store.sql_store import SqlStore


async def _accepted(store: SqlStore, *, count: int = 1) -> list[Notification]:
    account = await store.ensure_account("acme")
    sent = [
        Notification.new_sms(account_id=account.id, to="+14155550123", body=f"hi {i}")
        for i in range(count)
    ]
    if count == 1:
        await store.accept(sent[0])
    else:
        assert await store.accept_batch([(n, None) for n in sent]) == [None] * count
    return sent


async def _view(store: SqlStore, n: Notification) -> NotificationView:
    view = await store.get_view(n.account_id, n.id)
    assert view is not None
    return view


async def _rows(store: SqlStore) -> int:
    def count(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(timeline)).scalar_one())

    return await store.read_with(count)


async def test_an_accepted_notification_shows_its_first_step_and_stores_no_row(
    store: SqlStore,
) -> None:
    (n,) = await _accepted(store)
    view = await _view(store, n)
    assert [(s.status, s.at, s.detail) for s in view.timeline] == [
        ("accepted", n.created_at, "accepted by the API")
    ]
    assert await _rows(store) == 0


async def test_a_batch_writes_no_timeline_rows(store: SqlStore) -> None:
    sent = await _accepted(store, count=5)
    for n in sent:
        assert [s.status for s in (await _view(store, n)).timeline] == ["accepted"]
    assert await _rows(store) == 0


async def test_later_steps_follow_the_first_one(store: SqlStore) -> None:
    (n,) = await _accepted(store)
    sending = SmsSending(
        notification_id=n.id, account_id=n.account_id, attempt=1, provider="twilio"
    )
    sent = SmsSent(
        notification_id=n.id,
        account_id=n.account_id,
        attempt=1,
        provider="twilio",
        provider_message_id="SM" + "1" * 32,
    )
    await store.project_status(STATUS_GROUP, [sending, sent])
    view = await _view(store, n)
    assert view.timeline[0].status == "accepted"
    assert [s.status for s in view.timeline].count("accepted") == 1
    assert [s.status for s in view.timeline][1:] == ["sending", "sent"]


async def test_a_first_step_stored_by_an_older_version_is_shown_once(store: SqlStore) -> None:
    (n,) = await _accepted(store)
    row = {
        "notification_id": n.id,
        "status": "accepted",
        "at": n.created_at,
        "detail": "accepted by the API",
    }
    await store._commits.submit(lambda conn: conn.execute(insert(timeline), [row]))
    assert await _rows(store) == 1
    view = await _view(store, n)
    assert [(s.status, s.detail) for s in view.timeline] == [("accepted", "accepted by the API")]
