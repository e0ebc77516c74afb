"""The sandbox inbox: accepted messages in memory, oldest evicted past a cap."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

DEFAULT_CAPACITY = 200_000


@dataclass(slots=True)
class StoredMessage:
    """One accepted message and where it is in its (simulated) life."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    num_segments: int
    date_created: datetime
    status: str = "queued"
    date_updated: datetime | None = None
    date_sent: datetime | None = None
    status_callback: str | None = None
    error_code: int | None = None
    error_message: str | None = None

    def advance(self, status: str, at: datetime) -> None:
        """Move to ``status`` at time ``at``."""
        self.status = status
        self.date_updated = at

    def to_inbox_dict(self) -> dict[str, object]:
        """The inbox view (``/sandbox/messages``): plain JSON, ISO-8601 dates."""
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status": self.status,
            "num_segments": self.num_segments,
            "date_created": self.date_created.isoformat(),
            "status_callback": self.status_callback,
            "error_code": self.error_code,
        }


class Inbox:
    """Accepted messages by SID, in arrival order; O(1) add, get and eviction."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"inbox capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.evicted = 0
        self._messages: OrderedDict[str, StoredMessage] = OrderedDict()

    def add(self, message: StoredMessage) -> None:
        """Store ``message``, evicting the oldest one when full."""
        self._messages[message.sid] = message
        if len(self._messages) > self.capacity:
            self._messages.popitem(last=False)
            self.evicted += 1

    def get(self, sid: str) -> StoredMessage | None:
        """The message with ``sid``, if still held."""
        return self._messages.get(sid)

    def clear(self) -> int:
        """Forget every message; return how many there were."""
        count = len(self._messages)
        self._messages.clear()
        return count

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[StoredMessage]:
        """Oldest first."""
        return iter(self._messages.values())

    def newest_first(self) -> Iterator[StoredMessage]:
        """Newest first, as Twilio lists them."""
        return reversed(self._messages.values())


@dataclass(slots=True)
class SandboxStats:
    """Counters served at ``GET /sandbox/stats``."""

    accepted: int = 0
    rejected_by_fault: int = 0
    rejected_invalid: int = 0
    unauthorized: int = 0
    callbacks_delivered: int = 0
    callbacks_failed: int = 0
    callbacks_forged: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    #: sends held back by the latency fault, and their delays added up
    delayed: int = 0
    delay_seconds: float = 0.0

    def count_fault(self, name: str, *, rejected: bool = True) -> None:
        """Count one request hit by an injected fault; ``rejected`` if it was not recorded."""
        if rejected:
            self.rejected_by_fault += 1
        self.faults[name] = self.faults.get(name, 0) + 1

    def count_delay(self, seconds: float) -> None:
        """Count one send whose answer the latency fault held back ``seconds``."""
        self.delayed += 1
        self.delay_seconds += seconds

    def to_dict(self, inbox: Inbox) -> dict[str, object]:
        """JSON-ready counters, with the inbox's size and evictions."""
        return {
            "accepted": self.accepted,
            "rejected_by_fault": self.rejected_by_fault,
            "rejected_invalid": self.rejected_invalid,
            "unauthorized": self.unauthorized,
            "callbacks_delivered": self.callbacks_delivered,
            "callbacks_failed": self.callbacks_failed,
            "callbacks_forged": self.callbacks_forged,
            "faults": dict(self.faults),
            "delayed": self.delayed,
            "delay_seconds": self.delay_seconds,
            "inbox_size": len(inbox),
            "inbox_capacity": inbox.capacity,
            "inbox_evicted": inbox.evicted,
        }
