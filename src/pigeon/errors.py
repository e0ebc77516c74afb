"""Pigeon's exception tree.

Every error Pigeon raises on purpose derives from :class:`PigeonError`.
Adapters translate library errors (aiohttp, sqlite3, SQLAlchemy, aiokafka)
into these types at the boundary with ``raise ... from exc`` so that callers,
retry policies and HTTP handlers decide on *our* types, never on strings::

    PigeonError
    ├── ConfigurationError         a setting is missing or wrong; names the setting
    ├── ValidationError            caller input is invalid; names the field and reason
    │   └── InvalidPhoneNumber
    ├── AuthenticationError        missing or unknown API key
    ├── PermissionDenied           a known key that may not do this (an admin route)
    ├── NotFoundError              no such resource (for this account)
    ├── ConflictError              the request conflicts with stored state
    ├── KeyAlreadyUsed             another request claimed this idempotency key first
    ├── DeliveryError              a send or processing step failed
    │   ├── TransientError         may succeed later: retry with backoff
    │   │   ├── ProviderUnavailable   timeout, connection error, 5xx
    │   │   │   ├── ProviderOutcomeUnknown  the provider may have it: look it up first
    │   │   │   └── CircuitOpen     no provider tried: every breaker is open
    │   │   └── ProviderRateLimited   429 / Twilio 20429; carries retry_after
    │   └── PermanentError         will never succeed: fail or dead-letter
    │       ├── ProviderRejected      e.g. Twilio 21211 invalid 'To'
    │       └── MalformedEvent        an event that cannot be parsed
    ├── BusError                   the event bus failed (I/O, lost lease)
    │   └── BusUnavailable
    ├── StoreUnavailable           the database cannot be read or written right now
    └── SchemaNotMigrated          the database's schema is not this Pigeon's
"""

from __future__ import annotations


class PigeonError(Exception):
    """Root of every error Pigeon raises on purpose."""


class ConfigurationError(PigeonError):
    """A setting is missing, malformed or points at something unreachable."""

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"{setting}: {reason}")


class ValidationError(PigeonError):
    """Caller input is invalid; ``field`` names where, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class InvalidPhoneNumber(ValidationError):
    """A phone number that is not a valid E.164 number."""


class AuthenticationError(PigeonError):
    """The request carries no API key, or one we do not know."""


class PermissionDenied(PigeonError):
    """The caller is known but may not do this (an admin route with a tenant key)."""


class NotFoundError(PigeonError):
    """The resource does not exist, or belongs to another account."""


class ConflictError(PigeonError):
    """The request conflicts with what is already stored."""


class KeyAlreadyUsed(PigeonError):
    """Another request claimed this idempotency key first (it may still be committing)."""


class DeliveryError(PigeonError):
    """A delivery step failed; subclasses say whether retrying can help."""

    def __init__(
        self, message: str, *, code: int | None = None, http_status: int | None = None
    ) -> None:
        self.code = code
        self.http_status = http_status
        super().__init__(message)


class TransientError(DeliveryError):
    """A failure that may go away: retry later, honouring ``retry_after`` if set."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.retry_after = retry_after


class ProviderUnavailable(TransientError):
    """The provider timed out, refused the connection or answered 5xx."""


class ProviderOutcomeUnknown(ProviderUnavailable):
    """The request may have reached the provider, but no answer came back.

    A timeout after the request was written, a connection dropped before the
    response, or a 2xx we cannot read. Retrying is right, but re-sending
    blindly may deliver the SMS twice: look it up with
    :meth:`~pigeon.providers.port.ReconcilingProvider.find_sent` first, and do
    not fail over to another provider within the same attempt.
    """


class CircuitOpen(ProviderUnavailable):
    """No provider was even tried: every provider's circuit breaker is open.

    Not an attempt: it must not spend the message's retry budget.
    """


class ProviderRateLimited(TransientError):
    """The provider asked us to slow down (HTTP 429 or Twilio 20429)."""


class PermanentError(DeliveryError):
    """A failure that retrying cannot fix."""


class ProviderRejected(PermanentError):
    """The provider refused the message for good (bad number, blocked, ...)."""


class MalformedEvent(PermanentError):
    """An event on the bus that cannot be decoded into a known type."""


class BusError(PigeonError):
    """The event bus failed."""


class BusUnavailable(BusError):
    """The event bus cannot be reached or written right now."""


class StoreUnavailable(PigeonError):
    """The database cannot be read or written right now (locked, down, full)."""


class SchemaNotMigrated(PigeonError):
    """The database's schema is not the one this Pigeon needs (``pigeon db upgrade``)."""
