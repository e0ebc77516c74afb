"""The fault schedules added for issue 4: validation, dice and the outage clock."""

from __future__ import annotations

import pytest

from pigeon.errors import ValidationError
from pigeon.sandbox.faults import (
    CallbackPlan,
    Decision,
    Fault,
    FaultConfig,
    FaultInjector,
    parse_fault_config,
)


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"timeout_rate": 1.1}, "timeout_rate", "probability between 0 and 1"),
        ({"drop_after_accept_rate": -0.5}, "drop_after_accept_rate", "probability"),
        ({"duplicate_callback_rate": "often"}, "duplicate_callback_rate", "must be a number"),
        ({"out_of_order_callback_rate": 2}, "out_of_order_callback_rate", "probability"),
        ({"latency_jitter_ms": -1}, "latency_jitter_ms", "0 or more"),
        ({"down_for_s": -3}, "down_for_s", "0 or more"),
        ({"retry_after_s": 1.5}, "retry_after_s", "whole number of seconds"),
        ({"retry_after_s": -1}, "retry_after_s", "between 0 and 86400"),
        ({"retry_after_http_date": "yes"}, "retry_after_http_date", "true or false"),
        ({"error_codes": [20500]}, "error_codes", "must be an object"),
        ({"error_codes": {"12345": 0.1}}, "error_codes", "not a Twilio error code"),
        ({"error_codes": {"abc": 0.1}}, "error_codes", "not a Twilio error code"),
        ({"error_codes": {"20500": 1.5}}, "error_codes.20500", "probability"),
        ({"error_codes": {"20500": 0.6, "21211": 0.6}}, "error_codes", "add up to 1.2"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(
    changes: dict[str, object], field: str, reason: str
) -> None:
    """Each new setting is checked, and the error names the field and says what is allowed."""
    with pytest.raises(ValidationError) as caught:
        FaultConfig().updated(changes)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_error_codes_are_normalised_to_sorted_string_keys() -> None:
    """Codes given as numbers or strings compare equal and serialise as JSON keys."""
    config = FaultConfig(error_codes={21211: 0.05, "20500": 0.1})  # type: ignore[dict-item]
    assert config.error_codes == {"20500": 0.1, "21211": 0.05}
    assert config.to_dict()["error_codes"] == {"20500": 0.1, "21211": 0.05}
    assert config == FaultConfig(error_codes={"21211": 0.05, "20500": 0.1})


def test_error_codes_are_drawn_in_their_shares() -> None:
    """With 20500 at 0.2 and 21211 at 0.1, about those shares of sends get each code."""
    injector = FaultInjector(FaultConfig(error_codes={"20500": 0.2, "21211": 0.1}), seed=3)
    decisions = [injector.decide() for _ in range(5000)]
    server = sum(d == Decision(Fault.ERROR_CODE, 20500) for d in decisions)
    invalid = sum(d == Decision(Fault.ERROR_CODE, 21211) for d in decisions)
    assert 850 < server < 1150
    assert 380 < invalid < 620


@pytest.mark.parametrize(
    ("config", "fault"),
    [
        (FaultConfig(timeout_rate=1), Fault.TIMEOUT),
        (FaultConfig(drop_after_accept_rate=1), Fault.DROP_AFTER_ACCEPT),
        (FaultConfig(rate_429=1), Fault.RATE_LIMITED),
        (FaultConfig(timeout_rate=1, error_rate=1, rate_429=1), Fault.TIMEOUT),
        (FaultConfig(error_codes={"30001": 1.0}, rate_429=1), Fault.ERROR_CODE),
    ],
)
def test_each_fault_fires_at_rate_one_in_documented_order(
    config: FaultConfig, fault: Fault
) -> None:
    """At rate 1 a fault always fires, and earlier steps win over later ones."""
    assert FaultInjector(config, seed=1).pick() is fault


def test_down_for_s_is_an_outage_that_ends_by_itself() -> None:
    """down_for_s starts an outage now; it reads back as 0 and the clock counts down."""
    clock = FakeClock()
    injector = FaultInjector(clock=clock)
    config = injector.apply({"down_for_s": 5, "latency_ms": 10})
    assert config.down_for_s == 0.0
    assert config.latency_ms == 10
    assert injector.pick() is Fault.DOWN
    assert injector.state()["down_remaining_s"] == 5.0

    clock.now += 4.9
    assert injector.pick() is Fault.DOWN
    injector.apply({"latency_ms": 20})  # other changes do not restart or end the outage
    assert injector.down_remaining_s == pytest.approx(0.1)
    clock.now += 0.2
    assert injector.pick() is None
    assert injector.state()["down_remaining_s"] == 0.0


def test_down_for_s_zero_ends_an_outage_early() -> None:
    """Setting down_for_s to 0 ends a timed outage at once."""
    clock = FakeClock()
    injector = FaultInjector(FaultConfig(down_for_s=60), clock=clock)
    assert injector.pick() is Fault.DOWN
    injector.apply({"down_for_s": 0})
    assert injector.pick() is None


def test_callback_plans_follow_their_rates() -> None:
    """At rate 1 every callback is duplicated and reordered; by default none is."""
    always = FaultInjector(
        FaultConfig(duplicate_callback_rate=1, out_of_order_callback_rate=1), seed=1
    )
    assert always.callback_plan() == CallbackPlan(fails=False, duplicate=True, out_of_order=True)
    assert FaultInjector(seed=1).callback_plan() == CallbackPlan()


def test_latency_jitter_stays_within_its_range_and_is_seeded() -> None:
    """Latency is the fixed part plus up to the jitter, the same for the same seed."""
    config = FaultConfig(latency_ms=100, latency_jitter_ms=50)
    first, second = FaultInjector(config, seed=9), FaultInjector(config, seed=9)
    delays = [first.latency() for _ in range(200)]
    assert all(0.1 <= d <= 0.15 for d in delays)
    assert delays == [second.latency() for _ in range(200)]
    assert FaultInjector(FaultConfig(latency_ms=30)).latency() == pytest.approx(0.03)


def test_old_settings_still_work_alongside_the_new_ones() -> None:
    """The original five settings keep their meaning and defaults."""
    config = FaultConfig(latency_ms=5, error_rate=0.1, rate_429=0.2, down=False)
    assert config.delivery_failure_rate == 0.0
    assert config.retry_after_s == 1
    assert FaultInjector(FaultConfig(error_rate=1)).pick() is Fault.SERVER_ERROR


def test_a_fault_config_can_be_read_from_json() -> None:
    """parse_fault_config reads a JSON object and refuses anything else precisely."""
    config = parse_fault_config('{"error_codes": {"30001": 0.05}, "timeout_rate": 0.01}')
    assert config == FaultConfig(error_codes={"30001": 0.05}, timeout_rate=0.01)
    with pytest.raises(ValidationError, match="not valid JSON"):
        parse_fault_config("{oops")
    with pytest.raises(ValidationError, match="JSON object"):
        parse_fault_config("[1]")
