"""``last_error`` tells why the *latest* attempt failed (both dialects).

A replayed or retried notification that a later attempt sends shows no error any
more, and a failure of an older attempt that the projector sees late (events of
one notification are in order per partition, but a test or a replay can publish
anything) does not bring it back, nor the older attempt's provider.
"""

from __future__ import annotations

from datetime import timedelta

from pigeon.domain.events import (
    Event,
    SmsAttemptFailed,
    SmsDelivered,
    SmsFailed,
    SmsSending,
    SmsSent,
    SmsUndelivered,
    SmsWaiting,
)
from pigeon.domain.notification import Notification, NotificationView
from pigeon.services.projector import STATUS_GROUP
from pigeon.store.sql_store import SqlStore


async def _notification(store: SqlStore) -> Notification:
    account = await store.ensure_account("acme")
    notification = Notification.new_sms(account_id=account.id, to="+14155550123", body="hi")
    await store.accept(notification)
    return notification


async def _project(store: SqlStore, n: Notification, *events: Event) -> NotificationView:
    await store.project_status(STATUS_GROUP, list(events))
    view = await store.get_view(n.account_id, n.id)
    assert view is not None
    return view


def _ids(n: Notification) -> dict[str, str]:
    return {"account_id": n.account_id, "notification_id": n.id}


def _failed(n: Notification, attempt: int, provider: str) -> SmsAttemptFailed:
    return SmsAttemptFailed(
        **_ids(n), attempt=attempt, provider=provider, error="HTTP 503", retry_in_seconds=1.0
    )


async def test_a_later_success_clears_the_error_and_a_late_old_failure_does_not_return(
    store: SqlStore,
) -> None:
    n = await _notification(store)
    view = await _project(
        store, n, SmsSending(**_ids(n), attempt=1, provider="primary"), _failed(n, 1, "primary")
    )
    assert view.last_error == "HTTP 503"

    view = await _project(
        store,
        n,
        SmsSending(**_ids(n), attempt=2, provider="backup"),
        SmsSent(**_ids(n), attempt=2, provider="backup", provider_message_id="SM2"),
    )
    assert view.notification.status.value == "sent"
    assert (view.last_error, view.provider, view.attempts) == (None, "backup", 2)

    # attempt 1's failure, seen again late (a redelivery with another event id)
    view = await _project(store, n, _failed(n, 1, "primary"))
    assert (view.last_error, view.provider, view.attempts) == (None, "backup", 2)


async def test_a_delivery_clears_the_error_and_an_undelivered_report_sets_it(
    store: SqlStore,
) -> None:
    n = await _notification(store)
    await _project(
        store, n, SmsSending(**_ids(n), attempt=1, provider="twilio"), _failed(n, 1, "twilio")
    )
    view = await _project(store, n, SmsDelivered(**_ids(n), provider_message_id="SM1"))
    assert (view.notification.status.value, view.last_error) == ("delivered", None)

    # a failed notification that a late, contradicting delivery report reaches keeps its error
    failed = await _notification(store)
    view = await _project(store, failed, SmsFailed(**_ids(failed), reason="retries exhausted"))
    error = view.last_error
    assert error is not None
    view = await _project(store, failed, SmsDelivered(**_ids(failed), provider_message_id="SM9"))
    assert (view.notification.status.value, view.last_error) == ("failed", error)

    other = await _notification(store)
    view = await _project(
        store,
        other,
        SmsSent(**_ids(other), attempt=1, provider="twilio", provider_message_id="SM3"),
        SmsUndelivered(
            **_ids(other), provider_message_id="SM3", error_code=30003, error="Unreachable"
        ),
    )
    assert view.notification.status.value == "undelivered"
    assert view.last_error == "undelivered: Unreachable"


async def test_next_attempt_at_shows_while_it_waits_and_goes_once_it_is_tried(
    store: SqlStore,
) -> None:
    n = await _notification(store)
    sending = SmsSending(**_ids(n), attempt=1, provider="twilio")
    failed = _failed(n, 1, "twilio")  # retrying in 1 s; the projector orders by time
    view = await _project(store, n, sending, failed)
    assert view.next_attempt_at == failed.occurred_at + timedelta(seconds=1)

    waiting = SmsWaiting(**_ids(n), reason="every provider's circuit is open", wait_seconds=30)
    view = await _project(store, n, waiting)
    assert view.next_attempt_at == waiting.next_try_at
    assert view.timeline[-1].detail == waiting.detail()

    view = await _project(store, n, SmsSending(**_ids(n), attempt=2, provider="twilio"))
    assert view.next_attempt_at is None

    view = await _project(
        store, n, _failed(n, 2, "twilio"), SmsFailed(**_ids(n), reason="retries exhausted")
    )
    assert (view.notification.status.value, view.next_attempt_at) == ("failed", None)
