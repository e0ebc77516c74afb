"""How the Kafka backend lays Pigeon messages out on Kafka (see ``docs/events.md``).

* a message's key is its UTF-8 partition key, its value the payload bytes, its
  headers Kafka headers with UTF-8 values;
* ``<topic>.retry.<group>`` holds one group's retry-later messages: the original
  key, value and headers plus the ``pigeon-retry-*`` headers below, in the
  partition of the same number as the original's;
* dead letters carry the same headers as on every backend
  (:data:`~pigeon.bus.port.HEADER_DEAD_REASON` and friends).

Also maps aiokafka's exceptions onto ours. Nothing here imports aiokafka: records
are duck-typed, exceptions are told apart by their attributes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pigeon.bus.port import (
    Message,
    RetryLater,
)
from pigeon.errors import BusError, BusUnavailable

#: headers of a record on a retry topic; the prefix is reserved for them
RETRY_HEADER_PREFIX = "pigeon-retry-"
HEADER_RETRY_ATTEMPT = "pigeon-retry-attempt"
HEADER_RETRY_NOT_BEFORE = "pigeon-retry-not-before"
HEADER_RETRY_TOPIC = "pigeon-retry-topic"
HEADER_RETRY_PARTITION = "pigeon-retry-partition"
HEADER_RETRY_OFFSET = "pigeon-retry-offset"
HEADER_RETRY_REASON = "pigeon-retry-reason"


def retry_topic_for(topic: str, group: str) -> str:
    """The topic holding ``group``'s retry-later messages of ``topic``."""
    return f"{topic}.retry.{group}"


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce, its partition already chosen."""

    topic: str
    partition: int
    key: str
    value: bytes
    headers: Mapping[str, str]


def encode_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """Our ``str -> str`` headers as Kafka's ``(str, bytes)`` pairs."""
    return [(name, value.encode()) for name, value in headers.items()]


def decode_headers(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka header pairs back to ``str -> str`` (a repeated name keeps its last value)."""
    return {name: (value or b"").decode(errors="replace") for name, value in raw or ()}


def _key(record: Any) -> str:
    key: bytes | None = record.key
    return key.decode(errors="replace") if key is not None else ""


def message_from_record(record: Any) -> Message:
    """A first delivery of a record read from the main topic."""
    return Message(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=_key(record),
        value=record.value or b"",
        headers=decode_headers(record.headers),
    )


@dataclass(frozen=True, slots=True)
class RetryRecord:
    """A record of a retry topic: the redelivery and when it is due."""

    message: Message
    #: wall-clock time (Unix seconds) before which it must not be delivered
    not_before: float


def retry_from_record(record: Any, original_topic: str) -> RetryRecord:
    """Decode a retry-topic record; ``retry_id`` is its offset on the retry topic."""
    headers = decode_headers(record.headers)
    ours = {k: headers.pop(k) for k in list(headers) if k.startswith(RETRY_HEADER_PREFIX)}
    try:
        not_before = float(ours.get(HEADER_RETRY_NOT_BEFORE, "0"))
    except ValueError:
        not_before = 0.0
    message = Message(
        topic=ours.get(HEADER_RETRY_TOPIC, original_topic),
        partition=_int(ours.get(HEADER_RETRY_PARTITION), record.partition),
        offset=_int(ours.get(HEADER_RETRY_OFFSET), -1),
        key=_key(record),
        value=record.value or b"",
        headers=headers,
        attempt=_int(ours.get(HEADER_RETRY_ATTEMPT), 2),
        retry_id=record.offset,
        not_before=not_before,
    )
    return RetryRecord(message, not_before)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def retry_headers(message: Message, outcome: RetryLater) -> dict[str, str]:
    """Headers of the retry record that brings ``message`` back after the delay."""
    not_before = time.time() + max(0.0, outcome.delay_seconds)
    return {
        **message.headers,
        HEADER_RETRY_ATTEMPT: str(message.attempt + 1),
        HEADER_RETRY_NOT_BEFORE: f"{not_before:.6f}",
        HEADER_RETRY_TOPIC: message.topic,
        HEADER_RETRY_PARTITION: str(message.partition),
        HEADER_RETRY_OFFSET: str(message.offset),
        HEADER_RETRY_REASON: outcome.reason,
    }


def bus_error(exc: BaseException, doing: str) -> BusError:
    """Our exception for an aiokafka failure while ``doing`` something (raise it ``from``).

    Retriable Kafka errors (connection lost, leader moving, timeouts) mean the
    cluster is unavailable for now; the rest are bus errors.
    """
    name = type(exc).__name__
    transient = bool(getattr(exc, "retriable", False)) or name in {
        "KafkaConnectionError",
        "KafkaTimeoutError",
        "NodeNotReadyError",
        "RequestTimedOutError",
    }
    kind = BusUnavailable if transient else BusError
    return kind(f"Kafka: {doing} failed: {describe(exc)}")


def describe(exc: BaseException) -> str:
    """``Name: message`` of an exception, without aiokafka's doubled class name."""
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}" if text else name
