"""Pure steps of the Kafka consumer: fetched records -> batches, outcomes -> records.

Kept apart from :mod:`pigeon.bus.kafka_consumer` so the bookkeeping that
decides what is delivered, produced and committed has no I/O in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pigeon.bus.kafka_wire import (
    OutRecord,
    message_from_record,
    retry_from_record,
    retry_headers,
)
from pigeon.bus.partitioning import partition_for
from pigeon.bus.port import (
    Ack,
    Batch,
    DeadLetter,
    Message,
    Outcome,
    RetryLater,
    dead_letter_headers,
)


@dataclass(slots=True)
class Fetched:
    """What one ``getmany`` yields: batches per slot, and retry heads not due yet."""

    batches: list[Batch] = field(default_factory=list)
    #: retry partition -> (offset to seek back to, when it is due)
    not_due: dict[Any, tuple[int, float]] = field(default_factory=dict)


def assemble(records: dict[Any, list[Any]], topic: str, retry_topic: str, now: float) -> Fetched:
    """Group fetched records into one batch per slot: due retries first, then new messages.

    A retry record not due yet ends its partition's share; the caller seeks the
    retry partition back to it and pauses it until it is due.
    """
    fetched = Fetched()
    retries: dict[int, list[Message]] = {}
    fresh: dict[int, list[Message]] = {}
    for tp, batch in records.items():
        if tp.topic == retry_topic:
            due = retries.setdefault(tp.partition, [])
            for record in batch:
                retry = retry_from_record(record, topic)
                if retry.not_before > now:
                    fetched.not_due[tp] = (record.offset, retry.not_before)
                    break
                due.append(retry.message)
        else:
            fresh[tp.partition] = [message_from_record(r) for r in batch]
    for slot in sorted(retries.keys() | fresh.keys()):
        messages = retries.get(slot, []) + fresh.get(slot, [])
        if messages:
            fetched.batches.append(Batch(slot, messages))
    return fetched


def offsets_in(batch: Batch) -> tuple[list[int], list[int]]:
    """Offsets of the batch's new messages (main topic) and of its retries (retry topic)."""
    fresh = [m.offset for m in batch.messages if m.retry_id is None]
    retried = [m.retry_id for m in batch.messages if m.retry_id is not None]
    return fresh, retried


@dataclass(frozen=True, slots=True)
class Destinations:
    """Where one group's retries and dead letters go."""

    group: str
    retry_topic: str
    retry_partitions: int
    dead_letter_topic: str
    dead_partitions: int


def outcome_records(batch: Batch, outcomes: Sequence[Outcome], to: Destinations) -> list[OutRecord]:
    """The records settling ``batch`` must produce before it may commit."""
    records = []
    for message, outcome in zip(batch.messages, outcomes, strict=True):
        if isinstance(outcome, RetryLater):
            # the slot's own retry partition: the same member picks the retry up
            partition = batch.partition % to.retry_partitions
            headers = retry_headers(message, outcome)
            topic = to.retry_topic
        elif isinstance(outcome, DeadLetter):
            partition = partition_for(message.key, to.dead_partitions)
            headers = dead_letter_headers(message, outcome.reason, to.group)
            topic = to.dead_letter_topic
        elif isinstance(outcome, Ack):
            continue
        else:
            raise TypeError(f"unknown outcome {outcome!r}")
        records.append(OutRecord(topic, partition, message.key, message.value, headers))
    return records
