"""The relay's side of the outbox on PostgreSQL: what wakes it, and what it claims.

Every store commit on PostgreSQL used to ``NOTIFY`` the relay, which then read
the outbox for nothing: after each projection, each usage count and each of its
own deletions. A listener on the real server counts what arrives. The relay
claims rows with one ``DELETE ... RETURNING`` that commits only once they are
published.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import orjson
import psycopg
import pytest
from tests.integration.postgres import fresh_schema

from pigeon.bus.port import HEADER_EVENT_TYPE
from pigeon.domain.events import TOPIC_SMS_REQUESTED, SmsRequested, decode, encode
from pigeon.domain.ids import new_notification_id
from pigeon.domain.notification import Notification
from pigeon.errors import StoreUnavailable
from pigeon.store.engine import DatabaseUrl
from pigeon.store.outbox import RELAY_LOCK_ID
from pigeon.store.sql_store import OUTBOX_CHANNEL, SqlStore

Relaying = tuple[SqlStore, psycopg.AsyncConnection, str]
TO = "+14155550123"


@pytest.fixture
async def relaying() -> AsyncIterator[Relaying]:
    """A store with an outbox, a listener on the relay's channel (nothing heard yet) and
    an account's id."""
    with fresh_schema() as url:
        store = SqlStore(DatabaseUrl.parse(url), outbox=True, auto_migrate=True)
        await store.start()
        listener = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
        try:
            account = (await store.ensure_account("acme")).id
            await _rings(listener, 0.1)
            yield store, listener, account
        finally:
            await listener.close()
            await store.stop()


async def _rings(listener: psycopg.AsyncConnection, within: float = 0.3) -> int:
    return len([n async for n in listener.notifies(timeout=within)])


async def test_only_commits_that_write_the_outbox_notify_the_relay(
    relaying: Relaying,
) -> None:
    store, listener, account = relaying
    notification = Notification.new_sms(account_id=account, to="+14155550100", body="hello")
    await store.accept(notification)
    assert await _rings(listener) == 1  # accepted: its request event waits in the outbox

    rows = await store.outbox_batch(10)
    assert len(rows) == 1
    requested = notification.requested_event()
    assert isinstance(requested, SmsRequested)
    await store.meter_usage("usage-meter", [requested])
    await store.project_status("status-projector", [requested])
    await store.outbox_delete([row.id for row in rows])
    assert await _rings(listener) == 0  # counted, projected, deleted: nothing to relay
    assert await store.outbox_batch(10) == []

    other = Notification.new_sms(account_id=account, to="+14155550101", body="again")
    await store.accept(other)
    assert await _rings(listener) == 1


async def test_a_quiet_and_a_publishing_commit_in_one_group_still_notify(
    relaying: Relaying,
) -> None:
    store, listener, account = relaying
    notification = Notification.new_sms(account_id=account, to="+14155550102", body="together")
    await asyncio.gather(
        store.accept(notification),
        store.project_status("status-projector", []),
        store.outbox_delete([]),
    )
    assert await _rings(listener) >= 1
    assert len(await store.outbox_batch(10)) == 1


async def _accept(store: SqlStore, account: str, count: int) -> None:
    for n in range(count):
        await store.accept(
            Notification.new_sms(account_id=account, to=f"+1415555{n:04d}", body=f"m{n}")
        )


async def test_a_claim_deletes_its_rows_only_when_the_block_ends_without_error(
    relaying: Relaying,
) -> None:
    """The relay's claim: oldest first; a failed publish (or a crash) leaves the rows."""
    store, _, account = relaying
    await _accept(store, account, 5)
    leader = store.relay_leadership()
    assert await leader.acquire()
    try:
        with pytest.raises(RuntimeError):
            async with leader.claim(3) as rows:
                assert len(rows) == 3
                raise RuntimeError("Kafka refused the batch")
        assert len(await store.outbox_batch(10)) == 5  # rolled back: nothing lost
        oldest = [row.id for row in await store.outbox_batch(10)]
        async with leader.claim(3) as rows:
            assert [row.id for row in rows] == oldest[:3]
            assert [row.topic for row in rows] == [TOPIC_SMS_REQUESTED] * 3
            assert all(isinstance(decode(row.value), SmsRequested) for row in rows)
            assert rows[0].headers == {HEADER_EVENT_TYPE: "SmsRequested"}
        assert [row.id for row in await store.outbox_batch(10)] == oldest[3:]
        async with leader.claim(10) as rows:
            assert [row.id for row in rows] == oldest[3:]
        assert await store.outbox_batch(10) == []
    finally:
        await leader.release()


async def _end_the_leaders_session(conn: psycopg.AsyncConnection) -> int:
    """Make the server end the session that holds this schema's relay lock (as a
    network failure or a killed relay would), waiting until it has (and so has let
    the lock go); how many sessions it ended."""
    cursor = await conn.execute(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE locktype = 'advisory'"
        " AND granted AND classid = %s AND objid = hashtext(current_schema())::oid",
        (RELAY_LOCK_ID,),
    )
    return len(await cursor.fetchall())


async def test_only_the_leader_claims_and_a_dead_session_loses_its_claim(
    relaying: Relaying,
) -> None:
    """A claim runs on the session that holds the lock: a standby cannot claim, and
    when the leader's session dies mid-claim its rows stay for the next leader."""
    store, listener, account = relaying
    await _accept(store, account, 2)
    leader, standby = store.relay_leadership(), store.relay_leadership()
    assert await leader.acquire()
    try:
        assert not await standby.acquire()
        with pytest.raises(StoreUnavailable, match="does not hold the leadership"):
            async with standby.claim(10):
                pass
        with pytest.raises(StoreUnavailable, match="lost its database session"):
            async with leader.claim(10) as rows:
                assert len(rows) == 2
                assert await _end_the_leaders_session(listener) == 1
        assert len(await store.outbox_batch(10)) == 2  # its claim died with it
        assert await standby.acquire()  # the lock went with the session
        async with standby.claim(10) as rows:
            assert len(rows) == 2
        assert await store.outbox_batch(10) == []
    finally:
        await leader.release()
        await standby.release()


async def test_the_request_event_postgresql_writes_is_the_one_python_writes(
    relaying: Relaying,
) -> None:
    """An untraced accept sends only the notifications' rows: the server writes each
    one's request event (``json_build_object``) and timeline step. A traced accept's
    events come from Python (``encode``). Both must put the same envelope, topic, key
    and headers in the outbox, and the same first step in the timeline, for any text."""
    store, _, account = relaying
    bodies = [
        'quotes " and \\ backslash / slash',
        "tab\t newline\n return\r bell\x07 escape\x1b del\x7f",
        "Привет, 世界 😀 𝄞 e\u0301",
        '{"looks": ["like", "json"]}',
        "x" * 1600,
    ]
    plain = [
        Notification.new_sms(account_id=account, to=TO, body=body, from_number=sender)
        for body in bodies
        for sender in (None, "+14155550100")
    ]
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    traced = [dataclasses.replace(n, id=new_notification_id(), trace=trace) for n in plain]
    assert await store.accept_batch([(n, None) for n in plain]) == [None] * 10
    assert await store.accept_batch([(n, None) for n in traced]) == [None] * 10

    rows = await store.outbox_batch(100)
    assert len(rows) == 20
    by_id = {orjson.loads(row.value)["notification_id"]: row for row in rows}
    for untraced, python in zip(plain, traced, strict=True):
        row, other = by_id[untraced.id], by_id[python.id]
        assert orjson.loads(row.value) == orjson.loads(encode(untraced.requested_event()))
        assert decode(row.value) == untraced.requested_event()
        assert row.headers == {HEADER_EVENT_TYPE: "SmsRequested"}
        assert (row.topic, row.key) == (other.topic, other.key) == (TOPIC_SMS_REQUESTED, TO)
        assert other.headers == {HEADER_EVENT_TYPE: "SmsRequested", **trace}
        assert decode(other.value) == python.requested_event()
        for sent in (untraced, python):
            view = await store.get_view(account, sent.id)
            assert view is not None and view.notification == sent
            assert [(s.status, s.at, s.detail) for s in view.timeline] == [
                ("accepted", sent.created_at, "accepted by the API")
            ]
