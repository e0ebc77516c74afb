"""Unique, time-sortable identifiers (ULID layout, Crockford base32).

A ULID starts with its creation time, so ids sort by it: retention finds the
rows made before a moment by an index range on the id, below
:func:`ulid_floor` of that moment, with no timestamp column or extra index.
"""

from __future__ import annotations

import functools
import random
import time
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: every pair of digits, indexed by its 10-bit value, and where each pair sits in 130 bits
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))
#: prefixes of the ids we make; retention only touches ids with them
NOTIFICATION_PREFIX = "ntf_"
EVENT_PREFIX = "evt_"


def _encode(value: int) -> str:
    """26 Crockford base32 digits of a 128-bit ``value`` (the first digit holds 3 bits).

    Two digits (10 bits) per step: a loop over 26 digits cost ~2 µs, twice per
    accepted request.
    """
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


@functools.lru_cache(maxsize=64)
def _time_digits(ms: int) -> str:
    """The first 10 digits of a ULID made at ``ms``: they hold its 48 time bits alone
    (26 digits are 130 bits, the top 2 zero), so ids of one millisecond share them."""
    return _encode(ms << 80)[:10]


def ulid(now_ms: int | None = None) -> str:
    """Return a 26-character ULID: 48 bits of milliseconds, 80 random bits.

    The random part comes from :mod:`random` (seeded from the OS, and seeded
    again in a forked child by Python itself): ids must be unique, not secret
    (every read checks the caller's account), and a system call per id was a
    measurable share of the API's time under load.
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _time_digits(ms) + _random_digits(16)


#: a byte as a digit: its low 5 bits (256 is 8 x 32, so a random byte makes each digit as
#: likely as the others; 16 of them are the 80 random bits)
_DIGIT_OF_BYTE = bytes(_ALPHABET.encode()[byte & 31] for byte in range(256))


def _random_digits(count: int) -> str:
    """``count`` random digits, drawn and mapped in C (``random.randbytes``, ``translate``):
    a third of the time of 80 random bits cut into eight pairs of digits."""
    return random.randbytes(count).translate(_DIGIT_OF_BYTE).decode("ascii")


def ulid_floor(moment: datetime) -> str:
    """The smallest ULID of ``moment``'s millisecond: every ULID made before it sorts below.

    Plain byte order, and any collation that orders digits before letters and
    letters alphabetically (the ULID alphabet is digits and upper-case letters).
    """
    ms = max(0, min(int(moment.timestamp() * 1000), (1 << 48) - 1))
    return _encode(ms << 80)


def new_notification_id(now_ms: int | None = None) -> str:
    """A new notification id, e.g. ``ntf_01JD3X...`` (made at ``now_ms``, default now)."""
    return NOTIFICATION_PREFIX + ulid(now_ms)


def new_notification_ids(count: int, now_ms: int) -> list[str]:
    """``count`` new notification ids made at ``now_ms`` (a batch's), like ``count`` calls
    of :func:`new_notification_id`, with their random digits drawn in one go."""
    prefix = NOTIFICATION_PREFIX + _time_digits(now_ms)
    digits = _random_digits(16 * count)
    return [prefix + digits[start : start + 16] for start in range(0, 16 * count, 16)]


def new_event_id() -> str:
    """A new event id, e.g. ``evt_01JD3X...``."""
    return EVENT_PREFIX + ulid()


def request_event_id(notification_id: str) -> str:
    """The id of a notification's request event: the notification's own ULID, as an event.

    A notification has exactly one request event, so the id is unique; and being
    a function of the notification's id, the store can write that event from the
    notification's row alone (see :mod:`pigeon.store.intake`).
    """
    return EVENT_PREFIX + notification_id.removeprefix(NOTIFICATION_PREFIX)
