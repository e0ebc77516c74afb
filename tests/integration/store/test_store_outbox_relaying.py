"""The relay's side of the outbox on PostgreSQL: what wakes it, and what it claims.

Every store commit on PostgreSQL used to ``NOTIFY`` the relay, which then read
the outbox for nothing: after each projection, each usage count and each of its
own deletions. A listener on the real server counts what arrives. The relay
claims rows with one ``DELETE ... RETURNING`` that commits only once they are
published.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from tests.integration.postgres import fresh_schema

from pigeon.domain.events import SmsRequested
from pigeon.domain.notification import Notification
from pigeon.store.engine import DatabaseUrl
from pigeon.store.sql_store import OUTBOX_CHANNEL, SqlStore

Relaying = tuple[SqlStore, psycopg.AsyncConnection, str]


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
    with pytest.raises(RuntimeError):
        async with store.outbox_claim(3) as rows:
            assert len(rows) == 3
            raise RuntimeError("Kafka refused the batch")
    assert len(await store.outbox_batch(10)) == 5  # rolled back: nothing lost
    oldest = [row.id for row in await store.outbox_batch(10)]
    async with store.outbox_claim(3) as rows:
        assert [row.id for row in rows] == oldest[:3]
        async with store.outbox_claim(10) as others:  # a second claimer skips locked rows
            assert [row.id for row in others] == oldest[3:]
    assert await store.outbox_batch(10) == []
