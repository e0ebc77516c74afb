"""Unique, time-sortable identifiers (ULID layout, Crockford base32)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now_ms: int | None = None) -> str:
    """Return a 26-character ULID: 48 bits of milliseconds, 80 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_notification_id() -> str:
    """A new notification id, e.g. ``ntf_01JD3X...``."""
    return "ntf_" + ulid()


def new_event_id() -> str:
    """A new event id, e.g. ``evt_01JD3X...``."""
    return "evt_" + ulid()
