"""The ``Idempotency-Key`` header: checking it and fingerprinting the request it guards."""

from __future__ import annotations

import hashlib

import orjson
from pydantic import BaseModel

from pigeon.errors import ValidationError

MAX_KEY_LENGTH = 255


def check_idempotency_key(value: str) -> str:
    """The key, if it is 1-255 visible ASCII characters; else a ValidationError."""
    if not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise ValidationError(
            "Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters, got {len(value)}"
        )
    if not all("!" <= ch <= "~" for ch in value):
        raise ValidationError(
            "Idempotency-Key", "must be visible ASCII characters only (no spaces or controls)"
        )
    return value


def request_hash(request: BaseModel) -> str:
    """SHA-256 of the request as validated: key order and spacing do not matter."""
    canonical = orjson.dumps(request.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()
