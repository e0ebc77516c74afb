"""What a provider reports about a message it accepted, in Pigeon's own words.

Providers speak their own vocabularies (Twilio's form fields and message
resources, each with its own names). Each provider adapter turns its status
callbacks and status look-ups into a :class:`DeliveryReport` at the edge
(``pigeon.providers``), so the domain, the store and the services never see a
provider's field names, and a second provider family adds an adapter, not a
branch in the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from pigeon.domain.events import Event, SmsDelivered, SmsFailed, SmsSent, SmsUndelivered

#: the longest error text a report keeps (a provider's message is a sentence)
MAX_ERROR_CHARS = 300
#: error codes that fit the event envelope's 64-bit integers (Twilio's have 5 digits)
_MAX_CODE = 999_999_999


class ReportedStatus(StrEnum):
    """Where the provider says a message is."""

    #: queued, accepted, sending, scheduled, or a status we do not know: nothing new
    PENDING = "pending"
    #: handed to the carrier
    SENT = "sent"
    #: the handset has it
    DELIVERED = "delivered"
    #: the carrier could not deliver it
    UNDELIVERED = "undelivered"
    #: the provider gave up on it
    FAILED = "failed"


#: the statuses after which a provider says nothing more
FINAL_STATUSES = frozenset(
    {ReportedStatus.DELIVERED, ReportedStatus.UNDELIVERED, ReportedStatus.FAILED}
)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One status report of a provider about one message it accepted."""

    #: the provider's id of the message (what its receipt said)
    provider_message_id: str
    status: ReportedStatus
    #: the provider's numeric error code, if it gave one that fits
    error_code: int | None = None
    #: the provider's error text, if any
    error: str = ""
    #: the trace of the callback that brought it (headers, see :mod:`pigeon.tracing`)
    trace: Mapping[str, str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.error_code is not None and not 0 <= self.error_code <= _MAX_CODE:
            object.__setattr__(self, "error_code", None)
        if len(self.error) > MAX_ERROR_CHARS:
            object.__setattr__(self, "error", self.error[:MAX_ERROR_CHARS])

    @property
    def is_final(self) -> bool:
        """Whether the provider has decided (nothing further will come)."""
        return self.status in FINAL_STATUSES

    def event(
        self, account_id: str, notification_id: str, *, provider: str, attempt: int
    ) -> Event | None:
        """The event this report stands for; None for a status we know already.

        ``provider`` and ``attempt``: the provider and the attempt that sent the
        message (the attempt journal knows them; a report does not say).
        """
        a, n, sid, t = account_id, notification_id, self.provider_message_id, self.trace
        match self.status:
            case ReportedStatus.SENT:
                return SmsSent(
                    account_id=a,
                    notification_id=n,
                    attempt=attempt,
                    provider=provider,
                    provider_message_id=sid,
                    trace=t,
                )
            case ReportedStatus.DELIVERED:
                return SmsDelivered(
                    account_id=a, notification_id=n, provider_message_id=sid, trace=t
                )
            case ReportedStatus.UNDELIVERED:
                return SmsUndelivered(
                    account_id=a,
                    notification_id=n,
                    provider_message_id=sid,
                    error_code=self.error_code,
                    error=self.error,
                    trace=t,
                )
            case ReportedStatus.FAILED:
                code = self.error_code
                said = "unknown" if code is None else code
                return SmsFailed(
                    account_id=a,
                    notification_id=n,
                    reason=f"provider reported failed (error {said})",
                    error_code=code,
                    trace=t,
                )
        return None

    def to_json(self) -> str:
        """The report as stored while it waits for its message id to be recorded."""
        fields: dict[str, Any] = {"id": self.provider_message_id, "status": self.status.value}
        if self.error_code is not None:
            fields["code"] = self.error_code
        if self.error:
            fields["error"] = self.error
        if self.trace:
            fields["trace"] = dict(self.trace)
        return orjson.dumps(fields).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> DeliveryReport:
        """The report :meth:`to_json` stored; ``ValueError`` for anything else."""
        try:
            fields = orjson.loads(text)
            status = ReportedStatus(fields["status"])
            message_id = fields["id"]
            code = fields.get("code")
            error = fields.get("error", "")
            trace = fields.get("trace")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a stored delivery report: {text!r:.80}") from exc
        if not isinstance(message_id, str) or not isinstance(error, str):
            raise ValueError(f"not a stored delivery report: {text!r:.80}")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise ValueError(f"not a stored delivery report: {text!r:.80}")
        if trace is not None and not (
            isinstance(trace, dict) and all(isinstance(v, str) for v in trace.values())
        ):
            trace = None  # only ever written by us; a damaged one is not worth a failure
        return cls(message_id, status, code, error, trace)
