"""Several projector processes on one database keep statuses and usage exact (both dialects).

Each ``SqlStore`` here stands for one worker process: its own engines and its
own group committer, so their transactions really overlap on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from pigeon.domain.events import SmsDelivered, SmsRequested, SmsSending, SmsSent
from pigeon.domain.notification import Notification
from pigeon.errors import StoreUnavailable
from pigeon.services.projector import STATUS_GROUP, USAGE_GROUP
from pigeon.store.engine import DatabaseUrl
from pigeon.store.sql_store import SqlStore

COUNT = 150


@pytest.fixture
async def stores(database: DatabaseUrl) -> AsyncIterator[list[SqlStore]]:
    """Three started stores on one database, as three processes would have."""
    async with AsyncExitStack() as stack:
        opened = []
        for _ in range(3):
            store = SqlStore(database, outbox=True, auto_migrate=True)
            await store.start()
            stack.push_async_callback(store.stop)
            opened.append(store)
        yield opened


async def test_two_status_projectors_never_move_a_notification_backwards(
    stores: list[SqlStore],
) -> None:
    """'queued' projected by one process while another projects 'delivered': delivered wins."""
    api, first, second = stores
    account = await api.ensure_account("acme")
    accepted = [
        Notification.new_sms(account_id=account.id, to="+14155550123", body=f"m{i}")
        for i in range(COUNT)
    ]
    for notification in accepted:
        await api.accept(notification)

    def progress(n: Notification) -> list[SmsSending | SmsSent | SmsDelivered]:
        sid = f"SM{n.id}"
        common = {"account_id": n.account_id, "notification_id": n.id}
        return [
            SmsSending(**common, attempt=1, provider="twilio"),
            SmsSent(**common, attempt=1, provider="twilio", provider_message_id=sid),
            SmsDelivered(**common, provider_message_id=sid),
        ]

    # When one process projects each request ('queued', read from sms.requested) while the
    # other projects the same notification's sending/sent/delivered (notification.status)
    await asyncio.gather(
        *(
            task
            for n in accepted
            for task in (
                first.project_status(STATUS_GROUP, [n.requested_event()]),
                second.project_status(STATUS_GROUP, progress(n)),
            )
        )
    )

    # Then every notification is delivered, each step recorded once
    for n in accepted:
        view = await api.get_view(account.id, n.id)
        assert view is not None
        assert view.notification.status.value == "delivered", n.id
        steps = [entry.status for entry in view.timeline]
        assert sorted(steps) == sorted(["accepted", "queued", "sending", "sent", "delivered"])


async def test_two_usage_meters_count_each_request_once(stores: list[SqlStore]) -> None:
    """Both processes meter every request (a redelivery): each is counted exactly once."""
    api, first, second = stores
    account = await api.ensure_account("acme")
    requests = [
        Notification.new_sms(account_id=account.id, to="+14155550123", body="x" * 200)
        for _ in range(COUNT)
    ]
    for notification in requests:
        await api.accept(notification)
    events = [n.requested_event() for n in requests]

    async def meter(store: SqlStore, event: SmsRequested) -> None:
        # a unit that lost the race for the same event id fails and is retried, as the
        # consumer runner retries a batch
        for _ in range(5):
            try:
                await store.meter_usage(USAGE_GROUP, [event])
                return
            except StoreUnavailable:  # the other process recorded the event id first
                await asyncio.sleep(0.01)  # part of the scenario: a retry's backoff
        raise AssertionError("metering kept failing")

    await asyncio.gather(*(meter(s, e) for e in events for s in (first, second)))

    day = requests[0].created_at.date()
    [usage] = await api.usage(account.id, day, day)
    assert (usage.messages, usage.segments) == (COUNT, 2 * COUNT)
