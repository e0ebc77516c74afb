"""Parsing the HTTP ``Retry-After`` header (RFC 9110 section 10.2.3)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: the longest wait a Retry-After header can ask for (a day)
MAX_RETRY_AFTER_SECONDS = 86_400.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` value, or ``None`` if absent or garbled.

    The header is either a number of seconds or an HTTP-date; a date in the
    past means "now" (``0.0``). Waits are capped at ``MAX_RETRY_AFTER_SECONDS``:
    a longer one is a garbled header, not a plan (and would overflow a datetime).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # "²".isdigit() is true, float() refuses it
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; an unzoned date is read as UTC.
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return min(max(0.0, (when - reference).total_seconds()), MAX_RETRY_AFTER_SECONDS)
