"""Parsing Retry-After as seconds or as an HTTP-date."""

from datetime import UTC, datetime

import pytest

from pigeon.providers.retry_after import parse_retry_after

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_seconds_are_read_as_seconds() -> None:
    """``Retry-After: 7`` means wait seven seconds."""
    assert parse_retry_after("7") == 7.0


def test_http_date_becomes_seconds_from_now() -> None:
    """An HTTP-date is turned into the seconds between now and then."""
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=NOW) == 30.0


def test_http_date_in_the_past_means_retry_now() -> None:
    """A date already gone means no wait at all."""
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1.5e3x"])
def test_missing_or_garbled_values_mean_no_hint(value: str | None) -> None:
    """Absent or unreadable values give ``None`` so the caller uses its own backoff."""
    assert parse_retry_after(value, now=NOW) is None
