"""ULIDs sort by the time they were made, and ulid_floor marks a moment among them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pigeon.domain.ids import new_notification_id, new_notification_ids, ulid, ulid_floor


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


def test_a_ulid_is_its_time_then_its_random_bits_in_crockford_base32() -> None:
    """The first 10 digits (remembered per millisecond) are the time alone, the last 16
    the 80 random bits: the id reads back as the 128-bit value it encodes."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for ms in (0, 1, 1_700_000_000_123, (1 << 48) - 1):
        for _ in range(50):
            made = ulid(ms)
            value = 0
            for digit in made:
                value = value * 32 + alphabet.index(digit)
            assert value >> 80 == ms
            assert value < 1 << 128
    assert len({ulid(5) for _ in range(1000)}) == 1000  # random within one millisecond


def test_a_batch_of_notification_ids_reads_back_as_ulids_of_its_millisecond() -> None:
    """Ids made together for a batch are ULIDs as one-by-one ids are: the prefix, then the
    time digits of their millisecond, then 80 random bits, all different."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for ms in (0, 1_700_000_000_123, (1 << 48) - 1):
        made = new_notification_ids(500, ms)
        assert len(made) == len(set(made)) == 500
        one_by_one = new_notification_id(ms)
        for notification_id in made:
            assert notification_id[:14] == one_by_one[:14]  # "ntf_" and the time digits
            digits = notification_id.removeprefix("ntf_")
            assert len(digits) == 26
            value = 0
            for digit in digits:
                value = value * 32 + alphabet.index(digit)
            assert value >> 80 == ms
    assert new_notification_ids(0, 5) == []
    assert len(new_notification_ids(1, 5)) == 1
