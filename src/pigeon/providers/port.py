"""The SMS provider port: what the sender needs from any SMS gateway.

Besides :class:`SmsProvider` it declares :class:`ReconcilingProvider`, the
optional look-up that closes the duplicate window ("the provider accepted, we
never heard"), and :class:`StatusFetchingProvider`, the optional status fetch
that recovers a lost status callback, answered as a domain
:class:`~pigeon.domain.delivery.DeliveryReport`.
:class:`~pigeon.errors.ProviderOutcomeUnknown` is the error that says a send
ended in exactly that duplicate window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from pigeon.domain.delivery import DeliveryReport


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One SMS to send; ``from_number`` falls back to the provider's default sender."""

    to: str
    body: str
    from_number: str | None = None
    status_callback: str | None = None

    def __repr__(self) -> str:
        # The body is personal data and must never end up in logs or tracebacks.
        return (
            f"SmsMessage(to={self.to!r}, body=<{len(self.body)} chars>, "
            f"from_number={self.from_number!r}, status_callback={self.status_callback!r})"
        )


@dataclass(frozen=True, slots=True)
class ProviderReceipt:
    """What the provider said when it accepted a message."""

    message_id: str
    status: str
    segments: int | None
    provider: str


class SmsProvider(Protocol):
    """Sends SMS through one gateway.

    ``send`` raises only Pigeon errors: a :class:`~pigeon.errors.TransientError`
    subclass when retrying may help, a :class:`~pigeon.errors.PermanentError`
    subclass when it cannot.
    """

    name: str

    async def start(self) -> None:
        """Open connections; nothing connects before this is awaited."""
        ...

    async def stop(self) -> None:
        """Close connections; safe to call twice."""
        ...

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        """Hand ``message`` to the provider and return its receipt."""
        ...


@runtime_checkable
class ReconcilingProvider(SmsProvider, Protocol):
    """A provider that can tell whether it already accepted a message.

    The sender asks before re-sending a message whose earlier attempt ended in
    :class:`~pigeon.errors.ProviderOutcomeUnknown` or never finished (worker killed).
    """

    async def find_sent(
        self, message: SmsMessage, *, sent_after: datetime
    ) -> ProviderReceipt | None:
        """The receipt of ``message`` if the provider accepted it at or after ``sent_after``.

        ``None`` means the provider holds no such message: sending it is safe.
        Raises a :class:`~pigeon.errors.TransientError` when the provider cannot
        be asked right now (never guess "not sent" then), and a
        :class:`~pigeon.errors.PermanentError` when it refuses to answer at all.
        ``sent_after`` must be timezone-aware.
        """
        ...


@runtime_checkable
class StatusFetchingProvider(SmsProvider, Protocol):
    """A provider that can say where a message it accepted is now."""

    async def fetch_status(self, message_id: str) -> DeliveryReport:
        """The provider's current report on ``message_id``.

        Raises a :class:`~pigeon.errors.TransientError` when it cannot be asked
        now, a :class:`~pigeon.errors.PermanentError` when it cannot answer.
        """
        ...


class StatusLookup(Protocol):
    """Asks the provider that sent a message where it is now (the status poller's port)."""

    async def fetch_status(self, message_id: str, provider_name: str) -> DeliveryReport:
        """The report of the provider called ``provider_name`` on ``message_id``."""
        ...


def supports_find_sent(provider: SmsProvider) -> bool:
    """True when ``provider`` can answer :meth:`ReconcilingProvider.find_sent`.

    Wrappers (pacing, failover) always have the method; they say through a
    ``can_reconcile`` attribute whether what they wrap can really answer.
    """
    return isinstance(provider, ReconcilingProvider) and bool(
        getattr(provider, "can_reconcile", True)
    )
