"""Fault injection: what the sandbox should do wrong, and the dice that decide."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum

from pigeon.errors import ValidationError

_RATE_FIELDS = ("error_rate", "rate_429", "delivery_failure_rate")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Faults the sandbox injects into ``POST .../Messages.json``.

    ``latency_ms`` delays every send; ``error_rate`` answers that share of
    sends with 500 (Twilio 20500); ``rate_429`` with 429 (Twilio 20429,
    ``Retry-After: 1``); ``down`` answers every send with 503;
    ``delivery_failure_rate`` accepts the send but reports it ``undelivered``
    (ErrorCode 30003) in the status callbacks.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    rate_429: float = 0.0
    down: bool = False
    delivery_failure_rate: float = 0.0

    def __post_init__(self) -> None:
        _check_number("latency_ms", self.latency_ms)
        if self.latency_ms < 0:
            raise ValidationError(
                "latency_ms", f"must be 0 or more milliseconds, got {self.latency_ms}"
            )
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            _check_number(name, value)
            if not 0.0 <= value <= 1.0:
                raise ValidationError(name, f"must be a probability between 0 and 1, got {value}")
        if not isinstance(self.down, bool):
            raise ValidationError("down", f"must be true or false, got {self.down!r}")

    def updated(self, changes: Mapping[str, object]) -> FaultConfig:
        """A copy with ``changes`` applied (a partial update), validated.

        Raises :class:`~pigeon.errors.ValidationError` naming the first bad field.
        """
        known = {f.name for f in fields(self)}
        for name in changes:
            if name not in known:
                raise ValidationError(
                    name, f"unknown fault setting; expected one of {', '.join(sorted(known))}"
                )
        return replace(self, **changes)  # type: ignore[arg-type]  # values validated in __post_init__

    def to_dict(self) -> dict[str, float | bool]:
        """The configuration as JSON-ready values."""
        return asdict(self)


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValidationError(name, f"must be a finite number, got {value!r}")


class Fault(Enum):
    """A fault chosen for one request."""

    DOWN = "down"
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"


class FaultInjector:
    """Holds the current :class:`FaultConfig` and rolls a seeded die per request."""

    def __init__(self, config: FaultConfig | None = None, *, seed: int | None = None) -> None:
        self.config = config or FaultConfig()
        self._random = random.Random(seed)

    @property
    def latency_seconds(self) -> float:
        """How long to stall each send."""
        return self.config.latency_ms / 1000.0

    def pick(self) -> Fault | None:
        """The fault to inject into this send, if any."""
        config = self.config
        if config.down:
            return Fault.DOWN
        # Roll only for enabled faults so a seed gives the same sequence whatever else is set.
        if config.error_rate and self._random.random() < config.error_rate:
            return Fault.SERVER_ERROR
        if config.rate_429 and self._random.random() < config.rate_429:
            return Fault.RATE_LIMITED
        return None

    def delivery_fails(self) -> bool:
        """Whether this accepted message should end ``undelivered``."""
        rate = self.config.delivery_failure_rate
        return bool(rate) and self._random.random() < rate
