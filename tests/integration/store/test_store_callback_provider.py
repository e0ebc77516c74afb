"""A status callback speaks for the provider and attempt that sent the message (both dialects).

With a failover list a message may go out through ``backup``; the provider's
callback does not say which provider it comes from, but the journal does: the
notification ends with ``"provider": "backup"`` and one ``sent`` step, not a second
one "accepted by twilio" (a "sent" callback adds nothing: the journal said it).
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


@pytest.mark.parametrize("early", [False, True], ids=["after-the-journal", "before-it"])
async def test_a_sent_callback_is_no_news_and_the_journal_names_the_provider(
    store: SqlStore, early: bool
) -> None:
    """Whether the "sent" callback comes after the sender's journal or before it, it writes
    nothing (the journal's own ``sent`` event, committed with the message id, said it):
    one ``sent`` step, naming ``backup``; a "delivered" callback that comes early still
    waits for the journal and is applied by its commit."""
    account = await store.ensure_account("acme")
    notification = Notification.new_sms(account_id=account.id, to="+14155550123", body="hi")
    await store.accept(notification)
    sent = DeliveryReport("SM0123456789", ReportedStatus.SENT)
    delivered = DeliveryReport("SM0123456789", ReportedStatus.DELIVERED)
    if early:
        assert await store.record_delivery_report(sent) is True  # nothing to keep
        assert await store.record_delivery_report(delivered) is False  # kept for later
    journaled = await _sent_by_backup(store, notification, "SM0123456789")
    if not early:
        assert await store.record_delivery_report(sent) is True
        assert await store.record_delivery_report(delivered) is True

    rows = await store.outbox_batch(100)
    events = [decode(r.value) for r in rows]
    assert [type(e).__name__ for e in events if e.notification_id == notification.id][-2:] == [
        "SmsSent",
        "SmsDelivered",
    ]
    sents = [e for e in events if isinstance(e, SmsSent)]
    assert [(e.provider, e.attempt) for e in sents] == [("backup", journaled.attempt)]

    await store.project_status("status-projector", events)
    view = await store.get_view(account.id, notification.id)
    assert view is not None
    assert view.provider == "backup"
    assert view.notification.status == "delivered"
    sent_steps = [step.detail for step in view.timeline if step.status == "sent"]
    assert sent_steps == ["accepted by backup as SM0123456789"]
