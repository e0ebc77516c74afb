"""Cancel and the sender's journal decide between them who has attempt 1 (both dialects).

The status check stops a sender that reads a notification after its cancel
committed; these tests pin the journal's part, the race in between: a cancel
committed after the sender read the status, or a sender that opened attempt 1
after the cancel read it.
"""

from __future__ import annotations

from pigeon.domain.notification import Notification
from pigeon.store import attempts
from pigeon.store.sql_store import SqlStore


async def _accepted(store: SqlStore) -> Notification:
    account = await store.ensure_account("acme")
    notification = Notification.new_sms(account_id=account.id, to="+14155550123", body="hi")
    await store.accept(notification)
    return notification


async def test_a_sender_skips_a_notification_whose_attempt_1_a_cancel_took(
    store: SqlStore,
) -> None:
    notification = await _accepted(store)
    # the cancel's journal step alone, as if it committed after the sender read the status
    assert await store._commits.submit(lambda conn: attempts.cancel(conn, notification.id))
    (start,) = await store.begin_attempts([(notification.id, "twilio")], lambda starts: [])
    assert start.attempt == 0
    assert start.skip_reason is not None and "canceled" in start.skip_reason


async def test_a_cancel_loses_to_a_sender_that_opened_attempt_1(store: SqlStore) -> None:
    notification = await _accepted(store)
    (start,) = await store.begin_attempts([(notification.id, "twilio")], lambda starts: [])
    assert start.attempt == 1
    assert not await store._commits.submit(lambda conn: attempts.cancel(conn, notification.id))
