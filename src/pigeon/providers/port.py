"""The SMS provider port: what the sender needs from any SMS gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
