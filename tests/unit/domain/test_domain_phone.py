"""E.164 validation and masking (spec: only strict E.164 input is accepted)."""

from __future__ import annotations

import pytest

from pigeon.domain import phone
from pigeon.domain.phone import mask_phone, normalize_e164
from pigeon.errors import InvalidPhoneNumber, ValidationError


@pytest.mark.parametrize(
    "number",
    [
        "+14155550123",  # US
        "+442071838750",  # UK landline
        "+33142685300",  # France
        "+4915123456789",  # Germany mobile
        "+61412345678",  # Australia mobile
        "+8613800138000",  # China mobile
    ],
)
def test_a_valid_e164_number_is_returned_in_e164_form(number: str) -> None:
    """A valid number already in E.164 form comes back unchanged."""
    assert normalize_e164(number) == number


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("14155550123", "missing '+'"),
        ("4155550123", "national form without country code"),
        ("+1415555012a", "letters"),
        ("+1 415 555 0123", "spaces"),
        ("+1-415-555-0123", "punctuation"),
        ("+(1)4155550123", "parentheses"),
        ("+1234567890123456", "more than 15 digits"),
        ("+1415555", "too short for the country"),
        ("+11234567890", "US area code cannot start with 1"),
        ("+04155550123", "leading 0 after '+'"),
        ("+", "no digits at all"),
        ("", "empty string"),
        (" +14155550123", "leading whitespace"),
        ("+14155550123\n", "trailing newline"),
    ],
)
def test_a_number_not_in_strict_e164_form_is_rejected(raw: str, why: str) -> None:
    """Anything but '+' followed by a valid country code and number raises InvalidPhoneNumber."""
    with pytest.raises(InvalidPhoneNumber):
        normalize_e164(raw)


@pytest.mark.parametrize("raw", [14155550123, None, b"+14155550123", ["+14155550123"]])
def test_a_non_string_number_is_rejected(raw: object) -> None:
    """A number that is not a str is rejected with a hint at the expected format."""
    with pytest.raises(InvalidPhoneNumber, match=r"E\.164"):
        normalize_e164(raw)


def test_a_number_of_more_than_15_digits_is_rejected_as_too_long() -> None:
    """The error for a 16-digit number says it has too many digits."""
    with pytest.raises(InvalidPhoneNumber, match="more than 15 digits"):
        normalize_e164("+1234567890123456")


@pytest.mark.parametrize("field", ["to", "from"])
def test_the_error_names_the_field_it_was_raised_for(field: str) -> None:
    """Given a field name, the raised error carries it so the API can point at it."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalize_e164("4155550123", field)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_the_field_defaults_to_to() -> None:
    """Without a field name the error is about 'to'."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalize_e164("nope")
    assert caught.value.field == "to"


def test_invalid_phone_number_is_a_validation_error() -> None:
    """InvalidPhoneNumber is caught by handlers of ValidationError (the API's 422 path)."""
    with pytest.raises(ValidationError):
        normalize_e164("+0")


def test_non_ascii_digits_are_not_accepted_as_e164() -> None:
    """E.164 digits are ASCII 0-9; fullwidth digits are not E.164 form."""
    with pytest.raises(InvalidPhoneNumber):
        normalize_e164("+\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13")


def test_mask_phone_keeps_the_country_prefix_and_the_last_four_digits() -> None:
    """A full number is masked in the middle, as the logging convention shows."""
    assert mask_phone("+14155550123") == "+1415***0123"


def test_mask_phone_hides_almost_all_of_a_short_number() -> None:
    """A number of 8 characters or fewer keeps only its first two characters."""
    assert mask_phone("+1234567") == "+1***"
    assert mask_phone("") == "***"


def test_mask_phone_never_reveals_the_middle_digits() -> None:
    """The digits between the prefix and the last four never appear in the masked form."""
    masked = mask_phone("+4915123456789")
    assert masked == "+4915***6789"
    assert "12345" not in masked


def test_a_valid_number_is_remembered_and_answered_the_same_without_libphonenumber(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    phone._VALID.clear()
    assert normalize_e164("+14155550123") == "+14155550123"
    assert phone._VALID == {"+14155550123": "+14155550123"}

    def no_library(*_: object) -> None:
        raise AssertionError("libphonenumber asked again for a number it already passed")

    monkeypatch.setattr(phone.phonenumbers, "parse", no_library)
    assert normalize_e164("+14155550123") == "+14155550123"


def test_refusals_are_never_remembered_and_the_memory_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    phone._VALID.clear()
    for _ in range(2):
        with pytest.raises(InvalidPhoneNumber):
            normalize_e164("+19995550123")  # no such area code
    assert phone._VALID == {}
    monkeypatch.setattr(phone, "VALID_CACHE_SIZE", 3)
    numbers = [f"+1415555012{i}" for i in range(5)]
    for number in numbers:
        normalize_e164(number)
    assert len(phone._VALID) <= 3 and numbers[-1] in phone._VALID
