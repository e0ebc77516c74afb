"""E.164 phone numbers: strict validation and masking for logs."""

from __future__ import annotations

import phonenumbers

from pigeon.errors import InvalidPhoneNumber

_MAX_E164_DIGITS = 15
#: numbers already found valid (the text as given -> E.164). Recipients repeat (one-time
#: codes, a user base, a list sent to again), and libphonenumber's check is about half of
#: what validating a send costs. Bounded (emptied when full); a refusal is never kept.
_VALID: dict[str, str] = {}
VALID_CACHE_SIZE = 50_000


def normalize_e164(raw: object, field: str = "to") -> str:
    """Return ``raw`` as a valid E.164 number, or raise :class:`InvalidPhoneNumber`.

    Only numbers already written in E.164 form (``+`` then 8 to 15 digits, no
    spaces or punctuation) are accepted: guessing a country for a local number
    is how messages end up abroad.
    """
    if not isinstance(raw, str):
        raise InvalidPhoneNumber(field, "must be a string in E.164 format, e.g. +14155550123")
    known = _VALID.get(raw)
    if known is not None:
        return known
    digits = raw[1:]
    if not raw.startswith("+") or not (digits.isascii() and digits.isdigit()) or raw[1:2] == "0":
        raise InvalidPhoneNumber(
            field, f"{raw!r} is not in E.164 format ('+' then the country code and number)"
        )
    if len(raw) - 1 > _MAX_E164_DIGITS:
        raise InvalidPhoneNumber(field, f"{raw!r} has more than 15 digits")
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(field, f"{raw!r} is not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(field, f"{raw!r} is not a valid phone number for its country")
    number: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if len(_VALID) >= VALID_CACHE_SIZE:
        _VALID.clear()
    _VALID[raw] = number
    return number


def mask_phone(number: str) -> str:
    """Mask the middle of a number for logs: ``+14155550123`` -> ``+1415***0123``.

    At most four digits each side, and at least three hidden: a shorter number
    shows less (``+3541234567`` -> ``+354***4567``), never nearly all of itself.
    """
    if len(number) <= 8:
        return number[:2] + "***"
    shown = len(number) - 1 - 3
    head = min(4, shown // 2)
    tail = min(4, shown - head)
    return number[: 1 + head] + "***" + number[len(number) - tail :]
