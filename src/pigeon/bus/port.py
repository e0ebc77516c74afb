"""The event bus port: publish to topics, consume as a consumer group.

Semantics every backend honours (the contract suite in
``tests/integration/bus/`` checks them):

* a topic has a fixed number of partitions; a message's key picks its
  partition, so messages with one key are delivered in publish order;
* each consumer group has its own committed position per partition, so a
  group that was down resumes where it stopped and a new group replays history;
* delivery is at least once: a batch's position is committed only when the
  batch is *settled*, after its effects are durable;
* a message can be acked, retried later (after a delay, without holding up
  the rest of its partition) or dead-lettered to another topic with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pigeon.bus.wakes import Wakes

#: headers set on dead-lettered messages
HEADER_DEAD_REASON = "pigeon-dead-reason"
HEADER_ORIGINAL_TOPIC = "pigeon-original-topic"
HEADER_ORIGINAL_OFFSET = "pigeon-original-offset"
HEADER_GROUP = "pigeon-group"
HEADER_ATTEMPTS = "pigeon-attempts"
#: the event type travels in a header so routers need not parse the payload
HEADER_EVENT_TYPE = "pigeon-event-type"


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery of a log entry to a consumer group."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    #: 1 on first delivery to this group, +1 for each retry-later
    attempt: int = 1
    #: set when the delivery comes from the group's retry store, not the log
    retry_id: int | None = None
    #: a retry's due time as the backend recorded it (Unix seconds); it is not
    #: handed out before then
    not_before: float | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """The message is handled; never deliver it to this group again."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Deliver the message to this group again after ``delay_seconds``."""

    delay_seconds: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Give up on the message: move it to the dead-letter topic with ``reason``."""

    reason: str


Outcome = Ack | RetryLater | DeadLetter
ACK = Ack()


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages of one partition, handed out together and settled together."""

    partition: int
    messages: Sequence[Message]


class Consumer(Protocol):
    """One member of a consumer group reading one topic."""

    topic: str
    group: str
    #: what ended this member's waits for news, counted (a long-polling member counts none)
    wakes: Wakes

    async def start(self) -> None:
        """Join the group and take a share of the partitions."""

    async def stop(self) -> None:
        """Leave the group, releasing partitions to the other members."""

    async def fetch(self, max_messages: int, wait_seconds: float) -> list[Batch]:
        """Wait up to ``wait_seconds`` for messages; at most one batch per partition.

        A partition whose batch has not been settled yet is not fetched again.
        """

    async def settle(self, batch: Batch, outcomes: Sequence[Outcome]) -> None:
        """Record the outcome of every message of ``batch`` (same order) and commit."""

    async def settle_many(self, settled: Sequence[tuple[Batch, Sequence[Outcome]]]) -> None:
        """:meth:`settle` for batches of several partitions, in one commit where the
        backend can (the embedded bus), else each on its own."""

    def interrupt(self) -> None:
        """End a waiting :meth:`fetch` early (it returns what it has, maybe nothing)."""


class EventBus(Protocol):
    """Publishes messages and creates consumers."""

    #: how many messages a consumer's fetch asks for (its runner's ``max_batch``)
    fetch_size: int

    async def start(self) -> None:
        """Open connections; nothing connects before this."""

    async def stop(self) -> None:
        """Close connections."""

    async def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` if it does not exist yet."""

    async def publish(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Append one message durably; returns once it is committed."""

    def consumer(
        self, topic: str, group: str, *, dead_letter_topic: str, linger_seconds: float = 0.0
    ) -> Consumer:
        """A new group member for ``topic``; call ``start()`` on it.

        ``linger_seconds``: read new messages at most this often unless the last
        read was a full batch (fewer, bigger batches and transactions, for groups
        that can wait).
        """


def dead_letter_headers(message: Message, reason: str, group: str) -> dict[str, str]:
    """Headers of a dead letter: the same on every backend."""
    return {
        **message.headers,
        HEADER_DEAD_REASON: reason,
        HEADER_ORIGINAL_TOPIC: message.topic,
        HEADER_ORIGINAL_OFFSET: str(message.offset),
        HEADER_GROUP: group,
        HEADER_ATTEMPTS: str(message.attempt),
    }
