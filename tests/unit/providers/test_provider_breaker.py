"""The circuit breaker's state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from pigeon.providers.breaker import Admission, BreakerState, CircuitBreaker


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _breaker(clock: FakeClock, threshold: int = 3, reset: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, reset_timeout_seconds=reset, clock=clock)


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        admission = breaker.acquire()
        assert admission is not None
        breaker.record_failure(admission)


def test_a_new_breaker_is_closed_and_admits_everything() -> None:
    """A fresh breaker admits calls without limit and asks for no wait."""
    breaker = _breaker(FakeClock())
    admissions = [breaker.acquire() for _ in range(100)]
    assert all(a is not None and not a.probe for a in admissions)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.retry_in() == 0.0


def test_it_opens_after_n_consecutive_transient_failures() -> None:
    """Given threshold 3, two failures keep it closed and the third opens it."""
    breaker = _breaker(FakeClock())
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert breaker.acquire() is None


def test_a_success_resets_the_consecutive_count() -> None:
    """Failures separated by a success never add up to the threshold."""
    breaker = _breaker(FakeClock())
    _fail(breaker, 2)
    admission = breaker.acquire()
    assert admission is not None
    breaker.record_success(admission)
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2


def test_an_open_breaker_says_when_to_come_back() -> None:
    """While open, retry_in counts down the cool-down."""
    clock = FakeClock()
    breaker = _breaker(clock, reset=10.0)
    _fail(breaker, 3)
    clock.advance(4.0)
    assert breaker.retry_in() == pytest.approx(6.0)
    assert breaker.acquire() is None


def test_after_the_cool_down_exactly_one_probe_is_admitted() -> None:
    """Half-open admits one probe; a second caller is refused while it is out."""
    clock = FakeClock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN

    probe = breaker.acquire()
    assert probe is not None and probe.probe
    assert breaker.acquire() is None
    assert breaker.retry_in() > 0


def test_a_successful_probe_closes_the_breaker() -> None:
    """When the probe succeeds, calls flow again without limit."""
    clock = FakeClock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.advance(10.0)
    probe = breaker.acquire()
    assert probe is not None
    breaker.record_success(probe)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.acquire() is not None
    assert breaker.acquire() is not None


def test_a_failed_probe_reopens_for_a_whole_new_cool_down() -> None:
    """When the probe fails, the breaker opens again and the cool-down restarts from now."""
    clock = FakeClock()
    breaker = _breaker(clock, reset=10.0)
    _fail(breaker, 3)
    clock.advance(15.0)
    probe = breaker.acquire()
    assert probe is not None
    breaker.record_failure(probe)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(10.0)


def test_a_cancelled_probe_lets_another_probe_go() -> None:
    """A probe that ends without a verdict frees the half-open slot."""
    clock = FakeClock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.advance(10.0)
    probe = breaker.acquire()
    assert probe is not None
    breaker.release(probe)
    second = breaker.acquire()
    assert second is not None and second.probe


def test_outcomes_from_before_the_breaker_opened_are_ignored() -> None:
    """A slow call admitted while closed cannot close an open breaker, nor reopen a closed one."""
    clock = FakeClock()
    breaker = _breaker(clock)
    slow_success, slow_failure = breaker.acquire(), breaker.acquire()
    assert slow_success is not None and slow_failure is not None
    _fail(breaker, 3)
    breaker.record_success(slow_success)
    assert breaker.state is BreakerState.OPEN

    clock.advance(10.0)
    probe = breaker.acquire()
    assert probe is not None
    breaker.record_success(probe)
    breaker.record_failure(slow_failure)
    breaker.record_failure(Admission(generation=0, probe=True))
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0


@pytest.mark.parametrize(("threshold", "reset"), [(0, 1.0), (1, 0.0), (1, -5.0)])
def test_nonsense_settings_are_refused(threshold: int, reset: float) -> None:
    """A threshold below 1 or a cool-down of 0 or less is a programming error."""
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=threshold, reset_timeout_seconds=reset)
