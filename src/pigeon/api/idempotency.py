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


def request_hash(request: BaseModel, exclude: set[str] | None = None) -> str:
    """SHA-256 of the request as validated: key order and spacing do not matter.

    ``exclude``: fields that are not the request (a batch item's own idempotency key),
    so that an item and a single send of the same body hash alike.
    """
    canonical = orjson.dumps(
        request.model_dump(mode="json", exclude=exclude), option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()
