"""Unique, time-sortable identifiers (ULID layout, Crockford base32).

A ULID starts with its creation time, so ids sort by it: retention finds the
rows made before a moment by an index range on the id, below
:func:`ulid_floor` of that moment, with no timestamp column or extra index.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: prefixes of the ids we make; retention only touches ids with them
NOTIFICATION_PREFIX = "ntf_"
EVENT_PREFIX = "evt_"


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def ulid(now_ms: int | None = None) -> str:
    """Return a 26-character ULID: 48 bits of milliseconds, 80 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _encode((ms << 80) | int.from_bytes(os.urandom(10), "big"))


def ulid_floor(moment: datetime) -> str:
    """The smallest ULID of ``moment``'s millisecond: every ULID made before it sorts below.

    Plain byte order, and any collation that orders digits before letters and
    letters alphabetically (the ULID alphabet is digits and upper-case letters).
    """
    ms = max(0, min(int(moment.timestamp() * 1000), (1 << 48) - 1))
    return _encode(ms << 80)


def new_notification_id() -> str:
    """A new notification id, e.g. ``ntf_01JD3X...``."""
    return NOTIFICATION_PREFIX + ulid()


def new_event_id() -> str:
    """A new event id, e.g. ``evt_01JD3X...``."""
    return EVENT_PREFIX + ulid()
