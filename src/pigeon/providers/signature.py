"""Twilio request signing (``X-Twilio-Signature``).

Twilio signs each webhook with HMAC-SHA1, keyed by the account's auth token,
over the full URL followed by every POST parameter's name and value, the
parameters sorted by name; the header carries the base64 digest. This matches
``twilio.request_validator.RequestValidator.compute_signature``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Twilio-Signature"


def compute_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Return the ``X-Twilio-Signature`` value for a POST of ``params`` to ``url``."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def is_valid_signature(
    auth_token: str, url: str, params: Mapping[str, str], signature: str
) -> bool:
    """True when ``signature`` is what Twilio would send; compared in constant time."""
    expected = compute_signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))
