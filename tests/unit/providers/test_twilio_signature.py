"""Twilio request signing matches Twilio's own RequestValidator."""

from pigeon.providers.signature import compute_signature, is_valid_signature

# The vector from twilio-python's tests/unit/test_request_validator.py.
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_signature_matches_twilios_published_vector() -> None:
    """The signature of Twilio's test request is the one Twilio's SDK computes."""
    assert compute_signature(TOKEN, URL, PARAMS) == EXPECTED


def test_signature_does_not_depend_on_parameter_order() -> None:
    """Parameters are signed sorted by name, whatever order they arrive in."""
    reversed_params = dict(reversed(list(PARAMS.items())))
    assert compute_signature(TOKEN, URL, reversed_params) == EXPECTED


def test_valid_signature_is_accepted() -> None:
    """A request signed with the right token validates."""
    assert is_valid_signature(TOKEN, URL, PARAMS, EXPECTED)


def test_signature_with_another_token_is_refused() -> None:
    """A request signed with a different auth token does not validate."""
    assert not is_valid_signature("54321", URL, PARAMS, EXPECTED)


def test_tampered_parameter_is_refused() -> None:
    """Changing one parameter after signing invalidates the signature."""
    assert not is_valid_signature(TOKEN, URL, {**PARAMS, "Digits": "9999"}, EXPECTED)


def test_garbage_signature_is_refused_without_raising() -> None:
    """A non-ASCII or empty header is simply invalid."""
    assert not is_valid_signature(TOKEN, URL, PARAMS, "")
    assert not is_valid_signature(TOKEN, URL, PARAMS, "sïgnature")
