"""The forward-only status machine, checked pair by pair against an explicit table."""

from __future__ import annotations

import itertools

import pytest

from pigeon.domain.status import NotificationStatus, can_advance

S = NotificationStatus

#: every transition the spec allows; every other pair must be refused
ALLOWED = {
    (S.ACCEPTED, S.QUEUED),
    (S.ACCEPTED, S.SENDING),
    (S.ACCEPTED, S.SENT),
    (S.ACCEPTED, S.DELIVERED),
    (S.ACCEPTED, S.UNDELIVERED),
    (S.ACCEPTED, S.FAILED),
    (S.QUEUED, S.SENDING),
    (S.QUEUED, S.SENT),
    (S.QUEUED, S.DELIVERED),
    (S.QUEUED, S.UNDELIVERED),
    (S.QUEUED, S.FAILED),
    (S.SENDING, S.SENT),
    (S.SENDING, S.DELIVERED),
    (S.SENDING, S.UNDELIVERED),
    (S.SENDING, S.FAILED),
    (S.SENT, S.DELIVERED),
    (S.SENT, S.UNDELIVERED),
    (S.SENT, S.FAILED),
    # canceled: only before any attempt started (the journal decides; see SqlStore.cancel)
    (S.ACCEPTED, S.CANCELED),
    (S.QUEUED, S.CANCELED),
}

ALL_PAIRS = list(itertools.product(NotificationStatus, repeat=2))


@pytest.mark.parametrize(("current", "new"), ALL_PAIRS, ids=[f"{c}->{n}" for c, n in ALL_PAIRS])
def test_a_transition_is_allowed_exactly_when_the_table_allows_it(
    current: NotificationStatus, new: NotificationStatus
) -> None:
    """can_advance agrees with the expected table for every pair of statuses."""
    assert can_advance(current, new) is ((current, new) in ALLOWED)


def test_the_table_covers_all_eight_statuses() -> None:
    """The parametrized check runs over 8 x 8 pairs."""
    assert len(NotificationStatus) == 8
    assert len(ALL_PAIRS) == 64


@pytest.mark.parametrize("status", list(NotificationStatus))
def test_no_status_moves_to_itself(status: NotificationStatus) -> None:
    """A repeated event for the current status changes nothing."""
    assert not can_advance(status, status)


@pytest.mark.parametrize("final", [S.DELIVERED, S.UNDELIVERED, S.FAILED, S.CANCELED])
def test_nothing_leaves_a_final_state(final: NotificationStatus) -> None:
    """Once final, no status of any kind is accepted."""
    assert final.is_final
    assert not any(can_advance(final, new) for new in NotificationStatus)


@pytest.mark.parametrize("status", [S.ACCEPTED, S.QUEUED, S.SENDING, S.SENT])
def test_failed_is_reachable_from_every_non_final_state(status: NotificationStatus) -> None:
    """A permanent error can end a notification wherever it is on its way."""
    assert not status.is_final
    assert can_advance(status, S.FAILED)


def test_a_late_sent_never_overwrites_delivered() -> None:
    """Given a delivered notification, when Twilio's 'sent' arrives late, it is refused."""
    assert not can_advance(S.DELIVERED, S.SENT)


def test_the_status_values_are_the_documented_strings() -> None:
    """The API shows these exact lowercase names."""
    assert [s.value for s in NotificationStatus] == [
        "accepted",
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "canceled",
    ]
