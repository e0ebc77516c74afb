"""Fault injection: what the sandbox should do wrong, and the dice that decide.

Each send (``POST .../Messages.json``) goes through these steps, in order;
the first fault that fires decides the answer::

    latency_ms (+ up to latency_jitter_ms)   wait, then carry on
    down / down_for_s                        503, Twilio 20503 (before authentication)
    (authentication)                         401, Twilio 20003
    timeout_rate                             read the request, never answer; not recorded
    error_rate                               500, Twilio 20500
    error_codes {code: rate}                 that code with its HTTP status
    rate_429                                 429, Twilio 20429, Retry-After: retry_after_s
    (validation)                             400 with Twilio's code (21211, 21602, ...)
    drop_after_accept_rate                   recorded, callbacks scheduled, connection
                                             closed without an answer
    delivery_failure_rate, duplicate_callback_rate, out_of_order_callback_rate
                                             shape the status callbacks of accepted messages

Dice are rolled only for faults that are switched on, from one seeded
generator, so a seed replays the same run whatever else is configured.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum

import orjson

from pigeon.errors import ValidationError
from pigeon.providers.twilio_errors import TWILIO_ERROR_CODES

_RATE_FIELDS = (
    "error_rate",
    "rate_429",
    "delivery_failure_rate",
    "timeout_rate",
    "drop_after_accept_rate",
    "duplicate_callback_rate",
    "out_of_order_callback_rate",
)
_DURATION_FIELDS = ("latency_ms", "latency_jitter_ms", "down_for_s")
_BOOL_FIELDS = ("down", "retry_after_http_date")
#: Retry-After is sent as whole seconds; a day is far beyond any real provider's ask.
_MAX_RETRY_AFTER_S = 86_400


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Faults the sandbox injects into ``POST .../Messages.json`` (see the module docstring).

    Rates are probabilities between 0 and 1. ``error_codes`` maps Twilio error
    codes (as strings, like JSON keys) to the share of sends answered with
    that code; together they may not exceed 1. ``down_for_s`` starts an
    outage of that many seconds when the configuration is applied; the
    injector then keeps the end time and the stored value reads 0 again.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_codes: Mapping[str, float] = field(default_factory=dict)
    rate_429: float = 0.0
    retry_after_s: int = 1
    retry_after_http_date: bool = False
    down: bool = False
    down_for_s: float = 0.0
    timeout_rate: float = 0.0
    drop_after_accept_rate: float = 0.0
    delivery_failure_rate: float = 0.0
    duplicate_callback_rate: float = 0.0
    out_of_order_callback_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in _DURATION_FIELDS:
            value = _check_number(name, getattr(self, name))
            if value < 0:
                raise ValidationError(name, f"must be 0 or more, got {value}")
        for name in _RATE_FIELDS:
            _check_rate(name, getattr(self, name))
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(name, f"must be true or false, got {getattr(self, name)!r}")
        retry_after = self.retry_after_s
        if isinstance(retry_after, bool) or not isinstance(retry_after, int):
            raise ValidationError(
                "retry_after_s", f"must be a whole number of seconds, got {retry_after!r}"
            )
        if not 0 <= retry_after <= _MAX_RETRY_AFTER_S:
            raise ValidationError(
                "retry_after_s", f"must be between 0 and {_MAX_RETRY_AFTER_S}, got {retry_after}"
            )
        # Normalised to a sorted dict of str keys, so equal settings compare equal.
        object.__setattr__(self, "error_codes", _check_error_codes(self.error_codes))

    def updated(self, changes: Mapping[str, object]) -> FaultConfig:
        """A copy with ``changes`` applied (a partial update), validated.

        ``error_codes`` is replaced as a whole. Raises
        :class:`~pigeon.errors.ValidationError` naming the first bad field.
        """
        known = {f.name for f in fields(self)}
        for name in changes:
            if name not in known:
                raise ValidationError(
                    name, f"unknown fault setting; expected one of {', '.join(sorted(known))}"
                )
        return replace(self, **changes)  # type: ignore[arg-type]  # values validated in __post_init__

    def to_dict(self) -> dict[str, object]:
        """The configuration as JSON-ready values."""
        values: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        values["error_codes"] = dict(self.error_codes)
        return values


def parse_fault_config(text: str) -> FaultConfig:
    """A :class:`FaultConfig` from a JSON object (e.g. a ``--faults`` command-line option)."""
    try:
        changes = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("faults", f"is not valid JSON ({exc})") from None
    if not isinstance(changes, dict):
        raise ValidationError("faults", 'must be a JSON object such as {"error_rate": 0.1}')
    return FaultConfig().updated(changes)


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValidationError(name, f"must be a finite number, got {value!r}")
    return float(value)


def _check_rate(name: str, raw: object) -> float:
    value = _check_number(name, raw)
    if not 0.0 <= value <= 1.0:
        raise ValidationError(name, f"must be a probability between 0 and 1, got {raw}")
    return value


def _check_error_codes(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValidationError(
            "error_codes",
            f'must be an object mapping Twilio codes to rates, e.g. {{"20500": 0.1}}, '
            f"got {value!r}",
        )
    codes: dict[str, float] = {}
    for raw_code, rate in value.items():
        code = str(raw_code).strip()
        if not code.isdigit() or int(code) not in TWILIO_ERROR_CODES:
            raise ValidationError(
                "error_codes",
                f"{raw_code!r} is not a Twilio error code the sandbox knows; use one of "
                + ", ".join(str(c) for c in sorted(TWILIO_ERROR_CODES)),
            )
        codes[code] = _check_rate(f"error_codes.{code}", rate)
    total = sum(codes.values())
    if total > 1.0 + 1e-9:
        raise ValidationError(
            "error_codes", f"the rates add up to {total:g}; together they must be at most 1"
        )
    return dict(sorted(codes.items()))


class Fault(Enum):
    """A fault chosen for one request."""

    DOWN = "down"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    ERROR_CODE = "error_code"
    RATE_LIMITED = "rate_limited"
    DROP_AFTER_ACCEPT = "drop_after_accept"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do wrong with one send: the fault, and for ``ERROR_CODE`` which code."""

    fault: Fault | None
    code: int | None = None


@dataclass(frozen=True, slots=True)
class CallbackPlan:
    """How one accepted message's status callbacks misbehave."""

    fails: bool = False
    duplicate: bool = False
    out_of_order: bool = False


class FaultInjector:
    """Holds the current :class:`FaultConfig` and rolls a seeded die per request."""

    def __init__(
        self,
        config: FaultConfig | None = None,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._random = random.Random(seed)
        self._clock = clock
        self._down_until: float | None = None
        self._config = FaultConfig()
        self.config = config or FaultConfig()

    @property
    def config(self) -> FaultConfig:
        """The configuration in force."""
        return self._config

    @config.setter
    def config(self, config: FaultConfig) -> None:
        if config.down_for_s > 0:
            self._down_until = self._clock() + config.down_for_s
            config = replace(config, down_for_s=0.0)
        self._config = config

    def apply(self, changes: Mapping[str, object]) -> FaultConfig:
        """Apply a partial update; ``{"down_for_s": 0}`` also ends a timed outage now."""
        config = self._config.updated(changes)
        if "down_for_s" in changes and config.down_for_s == 0:
            self._down_until = None
        self.config = config
        return self._config

    @property
    def down_remaining_s(self) -> float:
        """Seconds left of the outage started with ``down_for_s`` (0 when none)."""
        if self._down_until is None:
            return 0.0
        left = self._down_until - self._clock()
        if left <= 0:
            self._down_until = None
            return 0.0
        return left

    def state(self) -> dict[str, object]:
        """The configuration plus the outage clock, for ``GET /sandbox/faults``."""
        return {**self._config.to_dict(), "down_remaining_s": round(self.down_remaining_s, 3)}

    @property
    def latency_seconds(self) -> float:
        """The fixed part of the delay added to each send."""
        return self._config.latency_ms / 1000.0

    def latency(self) -> float:
        """This send's delay: the fixed latency plus a uniform share of the jitter."""
        jitter = self._config.latency_jitter_ms
        extra = self._random.uniform(0.0, jitter) if jitter else 0.0
        return (self._config.latency_ms + extra) / 1000.0

    def decide(self) -> Decision:
        """The fault to inject into this send, if any."""
        config = self._config
        if config.down or self.down_remaining_s > 0:
            return Decision(Fault.DOWN)
        # Roll only for enabled faults so a seed gives the same sequence whatever else is set.
        if self._roll(config.timeout_rate):
            return Decision(Fault.TIMEOUT)
        if self._roll(config.error_rate):
            return Decision(Fault.SERVER_ERROR, 20500)
        if config.error_codes:
            die, cumulative = self._random.random(), 0.0
            for code, rate in config.error_codes.items():
                cumulative += rate
                if die < cumulative:
                    return Decision(Fault.ERROR_CODE, int(code))
        if self._roll(config.rate_429):
            return Decision(Fault.RATE_LIMITED, 20429)
        if self._roll(config.drop_after_accept_rate):
            return Decision(Fault.DROP_AFTER_ACCEPT)
        return Decision(None)

    def pick(self) -> Fault | None:
        """The fault to inject into this send, if any (:meth:`decide` without the code)."""
        return self.decide().fault

    def callback_plan(self) -> CallbackPlan:
        """How the callbacks of a message accepted now should misbehave."""
        config = self._config
        return CallbackPlan(
            fails=self._roll(config.delivery_failure_rate),
            duplicate=self._roll(config.duplicate_callback_rate),
            out_of_order=self._roll(config.out_of_order_callback_rate),
        )

    def delivery_fails(self) -> bool:
        """Whether this accepted message should end ``undelivered``."""
        return self._roll(self._config.delivery_failure_rate)

    def _roll(self, rate: float) -> bool:
        return bool(rate) and self._random.random() < rate
