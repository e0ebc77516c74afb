"""Retry policy: exponential backoff with full jitter, capped, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed step is tried again.

    ``delay(n)`` for the n-th failed attempt is uniform in
    ``[0, min(cap, base * 2**(n-1))]`` ("full jitter"), so a burst of failures
    does not come back as a synchronized burst of retries. A provider's
    ``Retry-After`` is a floor: we never come back sooner than asked.
    """

    max_attempts: int = 10
    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        jittered = self.rng.uniform(0, ceiling)
        if retry_after is not None:
            return max(jittered, min(retry_after, self.cap_seconds))
        return jittered

    def exhausted(self, attempt: int) -> bool:
        """True when attempt number ``attempt`` was the last one allowed."""
        return attempt >= self.max_attempts
