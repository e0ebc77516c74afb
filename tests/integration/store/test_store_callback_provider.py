"""A status callback speaks for the provider and attempt that sent the message (both dialects).

With a failover list a message may go out through ``backup``; the provider's
callback does not say which provider it comes from, but the journal does. The
callback's ``sent`` event must name that provider and attempt, so the notification
ends with ``"provider": "backup"`` and one ``sent`` step, not a second one
"accepted by twilio".
"""

from __future__ import annotations

import pytest

from pigeon.domain.delivery import DeliveryReport, ReportedStatus
from pigeon.domain.events import SmsSent, decode
from pigeon.domain.notification import Notification
from pigeon.store.attempts import AttemptResult
from pigeon.store.sql_store import SqlStore


async def _sent_by_backup(store: SqlStore, notification: Notification, sid: str) -> SmsSent:
    """Journal an attempt through ``backup`` that the provider accepted as ``sid``."""
    (start,) = await store.begin_attempts([(notification.id, "backup")], lambda starts: [])
    sent = SmsSent(
        account_id=notification.account_id,
        notification_id=notification.id,
        attempt=start.attempt,
        provider="backup",
        provider_message_id=sid,
    )
    await store.finish_attempts(
        [AttemptResult(notification.id, start.attempt, "sent", provider_message_id=sid)], [sent]
    )
    return sent


async def _callback_events(store: SqlStore) -> list[SmsSent]:
    """The ``sent`` events in the outbox, oldest first."""
    rows = await store.outbox_batch(100)
    return [e for e in (decode(r.value) for r in rows) if isinstance(e, SmsSent)]


@pytest.mark.parametrize("early", [False, True], ids=["after-the-journal", "before-it"])
async def test_a_sent_callback_names_the_provider_and_attempt_of_the_journal(
    store: SqlStore, early: bool
) -> None:
    """Whether the callback comes after the sender's journal or before it (then it waits,
    and the journal's commit applies it), its event names ``backup`` and the attempt."""
    account = await store.ensure_account("acme")
    notification = Notification.new_sms(account_id=account.id, to="+14155550123", body="hi")
    await store.accept(notification)
    callback = DeliveryReport("SM0123456789", ReportedStatus.SENT)
    if early:
        assert await store.record_delivery_report(callback) is False  # kept for later
    journaled = await _sent_by_backup(store, notification, "SM0123456789")
    if not early:
        assert await store.record_delivery_report(callback) is True

    events = await _callback_events(store)
    assert len(events) == 2  # the sender's and the callback's
    assert {(e.provider, e.attempt, e.provider_message_id) for e in events} == {
        ("backup", journaled.attempt, "SM0123456789")
    }

    # projected, the two are one step and the notification names backup
    await store.project_status("status-projector", events)
    view = await store.get_view(account.id, notification.id)
    assert view is not None
    assert view.provider == "backup"
    sent_steps = [step.detail for step in view.timeline if step.status == "sent"]
    assert sent_steps == ["accepted by backup as SM0123456789"]
