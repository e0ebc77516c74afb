"""Unique, time-sortable identifiers (ULID layout, Crockford base32).

A ULID starts with its creation time, so ids sort by it: retention finds the
rows made before a moment by an index range on the id, below
:func:`ulid_floor` of that moment, with no timestamp column or extra index.
"""

from __future__ import annotations

import base64
import functools
import random
import time
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: every pair of digits, indexed by its 10-bit value, and where each pair sits in 130 bits
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))
#: where each pair of the 80 random bits sits
_LOW_SHIFTS = tuple(range(70, -1, -10))
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
    value = random.getrandbits(80)  # 16 digits, 8 pairs
    return _time_digits(ms) + "".join([_PAIRS[(value >> shift) & 1023] for shift in _LOW_SHIFTS])


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


#: RFC 4648 base32 digits, and the Crockford digit of the same value for each
_BASE32 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TO_CROCKFORD = bytes.maketrans(_BASE32, _ALPHABET.encode())


def new_notification_ids(count: int, now_ms: int) -> list[str]:
    """``count`` new notification ids made at ``now_ms`` (a batch's), as ``count`` calls of
    :func:`new_notification_id` would make them: every random part drawn and encoded in
    one go (10 random bytes are 16 base32 digits; the digits are Crockford's)."""
    prefix = NOTIFICATION_PREFIX + _time_digits(now_ms)
    digits = base64.b32encode(random.randbytes(10 * count)).translate(_TO_CROCKFORD).decode()
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
