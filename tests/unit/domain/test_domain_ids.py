"""ULIDs sort by the time they were made, and ulid_floor marks a moment among them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pigeon.domain.ids import ulid, ulid_floor


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_every_ulid_made_before_a_moment_sorts_below_its_floor() -> None:
    """An id of the millisecond before sorts below the floor; one of that millisecond, not."""
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    earlier = [ulid(_ms(moment - timedelta(milliseconds=1))) for _ in range(100)]
    same_or_later = [ulid(_ms(moment)) for _ in range(100)] + [ulid(_ms(moment) + 1)]

    floor = ulid_floor(moment)

    assert all(i < floor for i in earlier)
    assert all(i >= floor for i in same_or_later)


def test_the_floor_is_a_ulid_of_the_same_alphabet_and_length() -> None:
    """Floors compare with ids character by character: 26 characters of the ULID alphabet."""
    floor = ulid_floor(datetime.now(UTC))
    assert len(floor) == len(ulid()) == 26
    assert floor.endswith("0" * 16)  # no randomness: the smallest id of its millisecond
    assert floor <= ulid()
