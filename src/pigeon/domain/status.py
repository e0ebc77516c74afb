"""The notification status state machine: forward-only.

``accepted -> queued -> sending -> sent -> delivered | undelivered``, and
``failed`` from any non-final state; ``canceled`` (by the caller) from any
state before a provider was handed the message. Events arrive late, twice and out of
order (Twilio's callbacks do), so a transition is applied only when it moves
the notification forward; a late ``sent`` never overwrites ``delivered``.
"""

from __future__ import annotations

from enum import StrEnum


class NotificationStatus(StrEnum):
    """Where a notification is on its way to the recipient."""

    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        """True for the states nothing can leave."""
        return self in _FINAL


_FINAL = frozenset(
    {
        NotificationStatus.DELIVERED,
        NotificationStatus.UNDELIVERED,
        NotificationStatus.FAILED,
        NotificationStatus.CANCELED,
    }
)
_RANK = {
    NotificationStatus.ACCEPTED: 0,
    NotificationStatus.QUEUED: 1,
    NotificationStatus.SENDING: 2,
    NotificationStatus.SENT: 3,
    NotificationStatus.DELIVERED: 4,
    NotificationStatus.UNDELIVERED: 4,
    NotificationStatus.FAILED: 4,
    NotificationStatus.CANCELED: 4,
}


def can_advance(current: NotificationStatus, new: NotificationStatus) -> bool:
    """True when moving from ``current`` to ``new`` goes strictly forward."""
    if current.is_final:
        return False
    if new is NotificationStatus.CANCELED:  # only before any attempt started
        return current in (NotificationStatus.ACCEPTED, NotificationStatus.QUEUED)
    return _RANK[new] > _RANK[current]
