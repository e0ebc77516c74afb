"""Standard Webhooks signatures, checked with the spec's own library; what endpoints may ask."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from pigeon.domain.webhooks import (
    STATUS_EVENT_TYPES,
    check_event_types,
    check_url,
    new_secret,
    secret_key,
    signature_header,
)
from pigeon.errors import ValidationError

BODY = b'{"type":"notification.status","timestamp":"2026-11-30T12:00:00.000000Z","data":{}}'


def _headers(keys: list[bytes], message_id: str = "msg_1") -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, message_id, timestamp, BODY),
    }


def test_a_new_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    """Secrets follow the spec's format, and no two are alike."""
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert secret_key(first) == base64.b64decode(first.removeprefix("whsec_"))


def test_a_signature_verifies_with_the_standardwebhooks_library() -> None:
    """The package every receiver uses accepts what we sign and returns the payload."""
    secret = new_secret()
    payload = Webhook(secret).verify(BODY, _headers([secret_key(secret)]))
    assert payload["type"] == "notification.status"


def test_another_secret_or_a_changed_body_does_not_verify() -> None:
    """A signature is bound to its secret, its message id and its body."""
    secret = new_secret()
    headers = _headers([secret_key(secret)])
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"status", b"statue"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_2"})


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    """Two space-separated signatures: receivers on the old or the new secret both accept."""
    old, new = new_secret(), new_secret()
    headers = _headers([secret_key(new), secret_key(old)])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(BODY, headers)
    assert Webhook(old).verify(BODY, headers)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("https:///no-host", "no host"),
        ("example.com/hook", "http:// or https://"),
        ("https://example.com/" + "a" * 2000, "at most 2000"),
        ("https://exa mple.com/", "spaces"),
    ],
)
def test_a_url_that_is_not_http_with_a_host_is_refused_naming_why(url: str, reason: str) -> None:
    """Only http(s) URLs with a host, of at most 2,000 characters."""
    with pytest.raises(ValidationError) as refused:
        check_url(url)
    assert refused.value.field == "url" and reason in refused.value.reason
    assert check_url("https://example.com/hooks?a=1") == "https://example.com/hooks?a=1"


def test_event_types_are_status_event_names_and_an_unknown_one_is_named() -> None:
    """Any status event type (not the request); duplicates collapse; the unknown one is named."""
    assert "SmsDelivered" in STATUS_EVENT_TYPES and "SmsRequested" not in STATUS_EVENT_TYPES
    assert check_event_types(["SmsDelivered", "SmsFailed", "SmsDelivered"]) == [
        "SmsDelivered",
        "SmsFailed",
    ]
    with pytest.raises(ValidationError) as refused:
        check_event_types(["SmsDelivered", "SmsExploded"])
    assert "'SmsExploded'" in refused.value.reason
