"""The API's intake file: accepts never wait for the store, and reach it exactly once.

Real SQLite files in ``tmp_path``: a store in intake mode (what ``bootstrap``
wires on the embedded default) writes accepted notifications, callbacks and
idempotency keys to ``<database>-intake``; :meth:`SqlStore.move_intake` moves
them into the store with its position in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from tests.support import eventually

from pigeon.bus.port import HEADER_EVENT_TYPE
from pigeon.domain.delivery import DeliveryReport, ReportedStatus
from pigeon.domain.events import TOPIC_SMS_REQUESTED, SmsRequested, decode, encode
from pigeon.domain.ids import new_notification_id
from pigeon.domain.notification import Account, Notification
from pigeon.services.intake_relay import IntakeRelay
from pigeon.store import intake as intake_sql
from pigeon.store.engine import DatabaseUrl
from pigeon.store.idempotency import IdempotentRequest
from pigeon.store.intake import create_intake
from pigeon.store.listing import NotificationFilter
from pigeon.store.sql_store import SqlStore

TO = "+14155550123"


def _count(path: Path, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def url(tmp_path: Path) -> DatabaseUrl:
    return DatabaseUrl(f"sqlite:///{tmp_path / 'pigeon.db'}", "sqlite")


async def _store(url: DatabaseUrl) -> SqlStore:
    store = SqlStore(url, auto_migrate=True, intake=True)
    await store.start()
    return store


@pytest.fixture
async def store(url: DatabaseUrl) -> AsyncIterator[SqlStore]:
    """A started store in intake mode (one process's)."""
    store = await _store(url)
    try:
        yield store
    finally:
        await store.stop()


@pytest.fixture
async def account(store: SqlStore) -> Account:
    return await store.ensure_account("acme")


def _new(account: Account, body: str = "hello") -> Notification:
    return Notification.new_sms(account_id=account.id, to=TO, body=body)


async def test_an_accept_waits_for_no_store_writer_and_is_readable_at_once(
    store: SqlStore, account: Account, url: DatabaseUrl
) -> None:
    notification = _new(account)
    # another process holds the store's write lock for the whole accept
    holder = sqlite3.connect(url.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        await asyncio.wait_for(store.accept(notification), 5)
        view = await store.get_view(account.id, notification.id)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert view is not None
    assert view.notification.body == "hello"
    assert view.notification.status.value == "accepted"
    assert [e.status for e in view.timeline] == ["accepted"]
    assert _count(url.path, "SELECT COUNT(*) FROM notifications") == 0
    assert await store.get_view("acc_someone_else", notification.id) is None


async def test_moving_puts_rows_and_events_in_the_store_exactly_once(
    store: SqlStore, account: Account, url: DatabaseUrl
) -> None:
    sent = [_new(account, f"n{i}") for i in range(7)]
    for notification in sent:
        await store.accept(notification)
    first = await store.move_intake(limit=3)
    assert first.notifications == 3
    rest = [await store.move_intake(limit=3) for _ in range(3)]
    assert [m.notifications for m in rest] == [3, 1, 0]

    assert _count(url.path, "SELECT COUNT(*) FROM notifications") == 7
    assert _count(url.path, "SELECT COUNT(*) FROM timeline") == 0  # the first step is the row
    for notification in sent:
        view = await store.get_view(account.id, notification.id)
        assert view is not None
        assert [step.status for step in view.timeline] == ["accepted"]
    conn = sqlite3.connect(url.path)
    try:
        values = conn.execute(
            "SELECT value FROM bus_log WHERE topic = ? ORDER BY id", (TOPIC_SMS_REQUESTED,)
        ).fetchall()
    finally:
        conn.close()
    events = [decode(bytes(v)) for (v,) in values]
    assert all(isinstance(e, SmsRequested) for e in events)
    # in the order they were accepted: per-recipient order survives the move
    assert [e.notification_id for e in events] == [n.id for n in sent]

    # the store's view is the moved row; the intake's copy can go
    view = await store.get_view(account.id, sent[0].id)
    assert view is not None and view.notification.created_at == sent[0].created_at
    assert await store.forget_moved_intake(rest[-1]) == 7
    intake = store.intake_path
    assert intake is not None
    assert _count(intake, "SELECT COUNT(*) FROM intake_notifications") == 0
    assert await store.get_view(account.id, sent[6].id) is not None


async def test_two_processes_moving_at_once_move_each_row_once(
    store: SqlStore, account: Account, url: DatabaseUrl
) -> None:
    for i in range(300):
        await store.accept(_new(account, f"n{i}"))
    other = await _store(url)  # a second worker process on the same files
    try:

        async def drain(s: SqlStore) -> None:
            while (await s.move_intake(limit=16)).notifications:
                pass

        await asyncio.gather(drain(store), drain(other), drain(store), drain(other))
    finally:
        await other.stop()
    assert _count(url.path, "SELECT COUNT(*) FROM notifications") == 300
    assert _count(url.path, "SELECT COUNT(*) FROM bus_log") == 300
    assert _count(url.path, "SELECT COUNT(*) FROM timeline") == 0  # the first step is the row


async def test_a_move_that_never_committed_is_moved_again_and_nothing_twice(
    store: SqlStore, account: Account, url: DatabaseUrl
) -> None:
    for i in range(5):
        await store.accept(_new(account, f"n{i}"))
    await store.move_intake()
    # a relay killed after its move but before forgetting: the rows are still there
    intake = store.intake_path
    assert intake is not None
    assert _count(intake, "SELECT COUNT(*) FROM intake_notifications") == 5
    await store.stop()
    again = await _store(url)
    try:
        assert (await again.move_intake()).notifications == 0
        await again.accept(_new(account, "after the restart"))
        assert (await again.move_intake()).notifications == 1
    finally:
        await again.stop()
        await store.start()  # for the fixture's stop
    assert _count(url.path, "SELECT COUNT(*) FROM notifications") == 6


async def test_an_idempotency_key_is_claimed_with_its_notification_in_the_intake(
    store: SqlStore, account: Account
) -> None:
    request = IdempotentRequest(account.id, "key-1", "hash-1", '{"id": "first"}')
    first = _new(account)
    assert await store.accept_idempotent(first, request) is None
    record = await store.accept_idempotent(_new(account), request)
    assert record is not None and record.notification_id == first.id
    intake = store.intake_path
    assert intake is not None
    assert _count(intake, "SELECT COUNT(*) FROM intake_notifications") == 1
    assert _count(intake, "SELECT COUNT(*) FROM idempotency_keys") == 1


async def test_callbacks_are_appended_and_applied_when_moved(
    store: SqlStore, url: DatabaseUrl
) -> None:
    report = DeliveryReport("SM" + "0" * 32, ReportedStatus.DELIVERED)
    assert await store.record_delivery_report(report)
    assert _count(url.path, "SELECT COUNT(*) FROM pending_callbacks") == 0
    moved = await store.move_intake()
    assert moved.callbacks == 1
    assert moved.kept == 1
    # no attempt has that id yet: the callback is kept until the sender records it
    conn = sqlite3.connect(url.path)
    try:
        (kept,) = conn.execute("SELECT params FROM pending_callbacks").fetchone()
    finally:
        conn.close()
    assert DeliveryReport.from_json(kept) == report


async def test_a_listing_never_skips_a_notification_moved_while_it_reads(
    store: SqlStore, account: Account, url: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page reads the intake file and the store one after the other. The relay may move
    a row, and forget it in the intake, between the two reads: it must still be listed
    (a caller listing what it has just sent saw it missing, now and then, in the e2e
    suite)."""
    api = await _store(url)  # the API's process; ``store`` is the relay's
    try:
        sent = _new(account)
        await api.accept(sent)
        reads = 0
        read = api._read

        @contextlib.asynccontextmanager
        async def read_then_move(engine: object = None) -> AsyncIterator[object]:
            nonlocal reads
            async with read(engine) as conn:  # type: ignore[arg-type]
                yield conn
            reads += 1
            if reads == 1:  # whichever file was read first, the row moves on now
                moved = await store.move_intake()
                assert moved.notifications == 1
                assert await store.forget_moved_intake(moved) == 1

        monkeypatch.setattr(api, "_read", read_then_move)
        page = await api.list_notifications(account.id, NotificationFilter(), limit=10)
        assert reads == 2
        assert [view.notification.id for view in page] == [sent.id]
        assert _count(url.path, "SELECT COUNT(*) FROM notifications") == 1
    finally:
        await api.stop()


async def test_one_relay_moves_an_accept_as_soon_as_it_is_committed_another_stands_by(
    store: SqlStore, account: Account, url: DatabaseUrl
) -> None:
    api = await _store(url)  # the API's process: its commit rings the relay's
    relay = IntakeRelay(store, poll_interval=30.0, forget_every=0.05)
    other = await _store(url)  # a second worker process
    standby = IntakeRelay(other, standby_interval=0.05)
    tasks = [asyncio.create_task(relay.run())]
    try:
        await eventually(lambda: relay.active, within=5)
        tasks.append(asyncio.create_task(standby.run()))
        await api.accept(_new(account))

        await eventually(
            lambda: _count(url.path, "SELECT COUNT(*) FROM notifications") == 1, within=5
        )
        intake = store.intake_path
        assert intake is not None
        await eventually(
            lambda: _count(intake, "SELECT COUNT(*) FROM intake_notifications") == 0, within=5
        )
        assert relay.moved == 1
        assert not standby.active

        # the active relay goes away: the standby takes over and moves the next one
        relay.request_stop()
        await asyncio.wait_for(tasks[0], 10)
        await eventually(lambda: standby.active, within=5)
        await api.accept(_new(account, "second"))
        await eventually(
            lambda: _count(url.path, "SELECT COUNT(*) FROM notifications") == 2, within=5
        )
    finally:
        for r in (relay, standby):
            r.request_stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await other.stop()
        await api.stop()


def test_processes_starting_together_create_the_intake_file_once(tmp_path: Path) -> None:
    """The workers of a split deployment start at the same moment: each creates the
    intake's tables if missing, and none fails because another just did."""
    path = tmp_path / "pigeon.db-intake"
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def create() -> None:
        start.wait()
        try:
            create_intake(path)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert _count(path, "SELECT COUNT(*) FROM intake_notifications") == 0


async def test_every_column_reads_back_as_accepted_before_and_after_the_move(
    store: SqlStore, account: Account
) -> None:
    """The intake row is bound by hand (a raw executemany), not by SQLAlchemy: each
    column must read back exactly as the notification was built, from the intake
    file before the move and from the store after it, single and batched."""
    single = Notification.new_sms(
        account_id=account.id,
        to=TO,
        from_number="+14155550100",
        body="Привет, 世界 😀" * 5,  # UCS-2, several segments
        metadata={"order": "A-1", "nested": {"n": 1, "list": [1, "two"]}, "none": None},
    )
    batched = [_new(account, f"batch {i} ^{{}}") for i in range(3)]  # GSM-7 extension chars
    await store.accept(single)
    assert await store.accept_batch([(n, None) for n in batched]) == [None] * 3
    sent = [single, *batched]

    def fields(n: Notification) -> tuple[object, ...]:
        return (
            n.id, n.account_id, n.channel, n.to, n.from_number, n.body, n.metadata,
            n.segments, n.encoding, n.status, n.created_at,
        )  # fmt: skip

    for notification in sent:  # not moved yet: read from the intake file
        view = await store.get_view(account.id, notification.id)
        assert view is not None
        assert fields(view.notification) == fields(notification)
    moved = await store.move_intake(limit=10)
    assert moved.notifications == 4
    await store.forget_moved_intake(moved)
    for notification in sent:  # from the store's own tables
        view = await store.get_view(account.id, notification.id)
        assert view is not None
        assert fields(view.notification) == fields(notification)
        assert [step.status for step in view.timeline] == ["accepted"]


async def test_the_request_event_sqlite_writes_at_the_move_is_the_one_python_writes(
    store: SqlStore, account: Account, url: DatabaseUrl
) -> None:
    """An untraced accept leaves its request event for SQLite to write at the move
    (``json_object`` over the row's columns); a traced one is written by Python
    (``encode``), as are all events elsewhere. Both must put the same envelope, topic,
    key and partition in the log, for any text a body may hold."""
    bodies = [
        'quotes " and \\ backslash / slash',
        "tab\t newline\n return\r bell\x07 escape\x1b del\x7f",
        "Привет, 世界 😀 𝄞 e\u0301",  # UCS-2, a character outside the BMP, a combining mark
        '{"looks": ["like", "json"]}',
        "x" * 1600,
    ]
    plain = [
        Notification.new_sms(account_id=account.id, to=TO, body=body, from_number=sender)
        for body in bodies
        for sender in (None, "+14155550100")
    ]
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    traced = [dataclasses.replace(n, id=new_notification_id(), trace=trace) for n in plain]
    assert await store.accept_batch([(n, None) for n in [*plain, *traced]]) == [None] * 20
    # the relay reads the rows in one step (a JSON array): exactly what a row-by-row read gets
    intake = sqlite3.connect(store.intake_path)
    try:
        for after, limit in ((0, 100), (0, 7), (5, 3)):
            by_row = intake.execute(intake_sql._SELECT_NOTIFICATIONS, (after, limit)).fetchall()
            assert intake_sql._notifications_after(intake, after, limit) == by_row
            assert len(by_row) == min(limit, 20 - after)
    finally:
        intake.close()
    await store.move_intake(limit=100)

    conn = sqlite3.connect(url.path)
    try:
        rows = conn.execute(
            "SELECT topic, partition, key, value, headers FROM bus_log WHERE topic = ? ORDER BY id",
            (TOPIC_SMS_REQUESTED,),
        ).fetchall()
    finally:
        conn.close()
    assert len(rows) == 20
    by_id = {orjson.loads(value)["notification_id"]: row for row in rows for value in [row[3]]}
    for untraced, python in zip(plain, traced, strict=True):
        topic, partition, key, value, headers = by_id[untraced.id]
        assert isinstance(value, bytes)  # a blob, as every other event's value
        assert orjson.loads(value) == orjson.loads(encode(untraced.requested_event()))
        assert decode(value) == untraced.requested_event()
        assert orjson.loads(headers) == {HEADER_EVENT_TYPE: "SmsRequested"}
        # the Python-written event of the same recipient: same topic, key and partition
        assert (topic, partition, key) == by_id[python.id][:3]
        assert orjson.loads(by_id[python.id][4]) == {HEADER_EVENT_TYPE: "SmsRequested", **trace}
        assert decode(by_id[python.id][3]) == python.requested_event()
