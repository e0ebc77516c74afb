"""A circuit breaker per provider: stop calling a provider that keeps failing.

::

    CLOSED ──N consecutive transient failures──▶ OPEN
      ▲                                           │ cool-down elapsed
      │ probe succeeds                            ▼
      └──────────────────────────────────── HALF_OPEN ──probe fails──▶ OPEN (cool-down again)

While closed, every call is admitted. While open, none is: the caller moves
on to the next provider at once instead of waiting for a timeout. After the
cool-down exactly one call (the probe) is admitted at a time; its outcome
decides. Outcomes of calls admitted before the last state change are
ignored, so a slow failure from an old generation cannot reopen a breaker
that a probe just closed, and a late success cannot close one that is open.

The clock is injectable so the state machine is tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class BreakerState(Enum):
    """Where a breaker is in its cycle."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Admission:
    """Permission for one call; hand it back with its outcome."""

    generation: int
    probe: bool


class CircuitBreaker:
    """Counts consecutive transient failures of one provider and opens after ``failure_threshold``.

    Not thread-safe: meant for one event loop, where it needs no lock.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if reset_timeout_seconds <= 0:
            raise ValueError(f"reset_timeout_seconds must be above 0, got {reset_timeout_seconds}")
        self.failure_threshold = failure_threshold
        self.reset_timeout_seconds = reset_timeout_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker past its cool-down reads as half-open."""
        if self._state is BreakerState.OPEN and self.retry_in() == 0.0:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Transient failures in a row since the last success (while closed)."""
        return self._failures

    def retry_in(self) -> float:
        """Seconds until a call may be admitted again; ``0.0`` when one may be now."""
        if self._state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self.reset_timeout_seconds - self._clock())
        if self._state is BreakerState.HALF_OPEN and self._probe_in_flight:
            # Unknown until the probe ends; a short wait is the honest hint.
            return min(1.0, self.reset_timeout_seconds)
        return 0.0

    def acquire(self) -> Admission | None:
        """Admit one call, or ``None`` if the breaker is open or a probe is already out."""
        if self._state is BreakerState.OPEN:
            if self.retry_in() > 0.0:
                return None
            self._transition(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN:
            if self._probe_in_flight:
                return None
            self._probe_in_flight = True
            return Admission(self._generation, probe=True)
        return Admission(self._generation, probe=False)

    def record_success(self, admission: Admission) -> None:
        """The call answered (a receipt, or a refusal of the message itself): the provider works."""
        if admission.generation != self._generation:
            return
        if admission.probe:
            self._transition(BreakerState.CLOSED)
        else:
            self._failures = 0

    def record_failure(self, admission: Admission) -> None:
        """The call failed transiently (timeout, 5xx, 429, connection error)."""
        if admission.generation != self._generation:
            return
        if admission.probe:
            self._open()
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open()

    def release(self, admission: Admission) -> None:
        """The call ended without a verdict (cancelled): let another probe go."""
        if admission.generation == self._generation and admission.probe:
            self._probe_in_flight = False

    def _open(self) -> None:
        self._transition(BreakerState.OPEN)
        self._opened_at = self._clock()

    def _transition(self, state: BreakerState) -> None:
        self._state = state
        self._generation += 1
        self._failures = 0
        self._probe_in_flight = False
