"""SMS segment counting: GSM-7 vs UCS-2, extension characters, split boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pigeon.domain.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SegmentCount,
    count_segments,
    is_gsm7,
)

EMOJI = "\U0001f600"  # one code point outside the BMP: a UTF-16 surrogate pair
CYRILLIC = "\u0436"  # 'zh': not in GSM-7, one UTF-16 unit


def test_the_gsm7_basic_table_has_its_127_printable_characters() -> None:
    """GSM 03.38 has 128 basic codes; all but ESC are characters we can send."""
    assert len(GSM7_BASIC) == 127


def test_the_gsm7_extension_table_has_its_ten_characters() -> None:
    """The extension table holds form feed and ^{}\\[~]|€, and nothing from the basic table."""
    assert frozenset("^{}\\[~]|€\f") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (153, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3)]
)
def test_gsm7_bodies_fit_160_in_one_segment_and_153_per_segment_when_split(
    length: int, segments: int
) -> None:
    """Plain GSM-7 text is billed 160 septets single, 153 per part once concatenated."""
    assert count_segments("a" * length) == SegmentCount("GSM-7", length, segments)


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_each_extension_character_takes_two_septets(char: str) -> None:
    """A character of the extension table is sent as ESC + code: two units."""
    count = count_segments(char)
    assert (count.encoding, count.units) == ("GSM-7", 2)


def test_80_euro_signs_fill_exactly_one_segment() -> None:
    """80 '€' are 160 septets: still a single segment."""
    assert count_segments("€" * 80) == SegmentCount("GSM-7", 160, 1)


def test_81_euro_signs_need_two_segments() -> None:
    """81 '€' are 162 septets: more than one segment holds."""
    assert count_segments("€" * 81) == SegmentCount("GSM-7", 162, 2)


def test_an_escape_pair_is_not_split_across_a_segment_boundary() -> None:
    """152 'a' + '€' + 152 'a' is 306 septets, yet needs three segments.

    By hand: part 1 holds the 152 'a' (the escape pair would make it 154 > 153),
    part 2 holds '€' (2) + 151 'a' = 153, part 3 holds the last 'a'. Naively
    splitting 306 units into 153-unit parts would give two.
    """
    body = "a" * 152 + "€" + "a" * 152
    assert count_segments(body) == SegmentCount("GSM-7", 306, 3)


def test_an_escape_pair_that_ends_exactly_on_the_boundary_stays_in_its_segment() -> None:
    """151 'a' + '€' fills part 1 to 153 exactly; 153 more 'a' fill part 2: two segments."""
    body = "a" * 151 + "€" + "a" * 153
    assert count_segments(body) == SegmentCount("GSM-7", 306, 2)


def test_mixed_basic_and_extension_characters_are_counted_by_units() -> None:
    """Given text with braces, the units are characters plus one per extension character."""
    body = "Hello {name}, your code is [1234]"
    assert count_segments(body) == SegmentCount("GSM-7", len(body) + 4, 1)


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_bodies_fit_70_in_one_segment_and_67_per_segment_when_split(
    length: int, segments: int
) -> None:
    """Text outside GSM-7 is billed 70 UTF-16 units single, 67 per part once concatenated."""
    assert count_segments(CYRILLIC * length) == SegmentCount("UCS-2", length, segments)


def test_one_non_gsm_character_turns_the_whole_body_into_ucs2() -> None:
    """Given 100 GSM letters and one Cyrillic letter, the body is UCS-2 and needs two parts."""
    count = count_segments("a" * 100 + CYRILLIC)
    assert count == SegmentCount("UCS-2", 101, 2)


def test_an_emoji_counts_two_utf16_units() -> None:
    """An emoji outside the BMP is a surrogate pair: two units."""
    assert count_segments(EMOJI) == SegmentCount("UCS-2", 2, 1)


def test_35_emoji_fill_one_segment_and_36_need_two() -> None:
    """35 emoji are 70 units (one segment); 36 are 72 (two)."""
    assert count_segments(EMOJI * 35) == SegmentCount("UCS-2", 70, 1)
    assert count_segments(EMOJI * 36) == SegmentCount("UCS-2", 72, 2)


def test_a_surrogate_pair_is_not_split_across_a_segment_boundary() -> None:
    """66 letters + emoji + 66 letters is 134 units, yet needs three segments.

    By hand: part 1 holds 66 units (the pair would make it 68 > 67), part 2 the
    pair + 65 letters = 67, part 3 the last letter.
    """
    body = CYRILLIC * 66 + EMOJI + CYRILLIC * 66
    assert count_segments(body) == SegmentCount("UCS-2", 134, 3)


def test_an_empty_body_is_one_gsm7_segment() -> None:
    """An empty body is billed as one (empty) GSM-7 segment."""
    assert count_segments("") == SegmentCount("GSM-7", 0, 1)


@pytest.mark.parametrize(
    ("body", "expected"),
    [("", True), ("Hello @ £5 ¿ñ?", True), ("{€}", True), ("café", True), ("naïve", False)],
)
def test_is_gsm7_tells_whether_every_character_is_in_the_gsm_tables(
    body: str, expected: bool
) -> None:
    """'é' is in the basic table, 'ï' is not."""
    assert is_gsm7(body) is expected


def _reference(body: str) -> tuple[str, int, int]:
    """Segments counted character by character, as the rules read (the slow way)."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in body):
        sizes, single, multi, encoding = (
            [2 if ch in GSM7_EXTENSION else 1 for ch in body],
            160,
            153,
            "GSM-7",
        )
    else:
        sizes, single, multi, encoding = (
            [2 if ord(ch) > 0xFFFF else 1 for ch in body],
            70,
            67,
            "UCS-2",
        )
    if sum(sizes) <= single:
        return encoding, sum(sizes), 1
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:
            segments, used = segments + 1, 0
        used += size
    return encoding, sum(sizes), segments


_ALPHABETS = st.sampled_from(
    [
        "".join(sorted(GSM7_BASIC)),
        "".join(sorted(GSM7_BASIC | GSM7_EXTENSION)),
        "".join(sorted(GSM7_BASIC | GSM7_EXTENSION)) + "éüΩ中😀\U0001f600",
    ]
)


@given(
    _ALPHABETS.flatmap(lambda alphabet: st.text(alphabet=st.sampled_from(alphabet), max_size=400))
)
def test_the_fast_count_agrees_with_counting_character_by_character(body: str) -> None:
    counted = count_segments(body)
    assert (counted.encoding, counted.units, counted.segments) == _reference(body)
