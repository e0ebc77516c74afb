"""The sandbox inbox keeps arrival order and a bounded size."""

from datetime import UTC, datetime

from pigeon.sandbox.store import Inbox, StoredMessage


def _message(sid: str) -> StoredMessage:
    return StoredMessage(
        sid=sid,
        account_sid="AC1",
        to="+14155550123",
        from_="+15005550006",
        body="hi",
        num_segments=1,
        date_created=datetime.now(UTC),
    )


def test_messages_are_listed_oldest_first_and_fetched_by_sid() -> None:
    """Added messages come back in arrival order and by SID."""
    inbox = Inbox()
    for sid in ("SM1", "SM2", "SM3"):
        inbox.add(_message(sid))
    assert [m.sid for m in inbox] == ["SM1", "SM2", "SM3"]
    assert [m.sid for m in inbox.newest_first()] == ["SM3", "SM2", "SM1"]
    assert inbox.get("SM2") is not None
    assert inbox.get("SM9") is None


def test_oldest_message_is_evicted_past_capacity() -> None:
    """A full inbox drops its oldest message and counts the eviction."""
    inbox = Inbox(capacity=2)
    for sid in ("SM1", "SM2", "SM3"):
        inbox.add(_message(sid))
    assert [m.sid for m in inbox] == ["SM2", "SM3"]
    assert inbox.evicted == 1


def test_clear_empties_the_inbox_and_says_how_many() -> None:
    """Clearing reports the number of messages forgotten."""
    inbox = Inbox()
    inbox.add(_message("SM1"))
    assert inbox.clear() == 1
    assert len(inbox) == 0
