"""Status webhooks, the pure part: secrets, Standard Webhooks signatures, what may be asked.

A delivery is signed as the Standard Webhooks spec says
(https://www.standardwebhooks.com)::

    webhook-id:        msg_…            the delivery's id, the same on every retry
    webhook-timestamp: 1764532800       Unix seconds of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

keyed with the bytes after ``whsec_`` (base64-decoded). While a rotated secret's
grace period lasts, both secrets sign: the header holds two signatures, space-separated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from pigeon.domain.events import EVENT_TYPES, SmsRequested
from pigeon.errors import ValidationError

SECRET_PREFIX = "whsec_"
#: random bytes in a new secret (the spec asks for 24 to 64)
SECRET_BYTES = 32
MAX_URL_CHARS = 2000
MAX_DESCRIPTION_CHARS = 500
#: the event types an endpoint can subscribe to: every status change (not the request)
STATUS_EVENT_TYPES = tuple(name for name in EVENT_TYPES if name != SmsRequested.type_name)
#: what the ``type`` of every webhook payload is
PAYLOAD_TYPE = "notification.status"


def new_secret() -> str:
    """A new signing secret, ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a delivery attempt."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(keys: Iterable[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one signature per key, space-separated."""
    return " ".join(signature(key, message_id, timestamp, body) for key in keys)


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, of at most 2,000 characters."""
    if len(url) > MAX_URL_CHARS:
        raise ValidationError("url", f"must be at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise ValidationError("url", f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("url", f"must be an http:// or https:// URL, got {url[:100]!r}")
    if not host:
        raise ValidationError("url", f"has no host: {url[:100]!r}")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValidationError("url", "must not contain spaces or control characters")
    return url


def check_event_types(types: Iterable[str]) -> list[str]:
    """The event types, deduplicated in order; an unknown one is a ValidationError naming it."""
    chosen: list[str] = []
    for name in types:
        if name not in STATUS_EVENT_TYPES:
            raise ValidationError(
                "event_types",
                f"unknown event type {name[:100]!r}; use any of {', '.join(STATUS_EVENT_TYPES)}",
            )
        if name not in chosen:
            chosen.append(name)
    return chosen
