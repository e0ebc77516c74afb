"""Fault configuration is validated and the dice are reproducible."""

import math

import pytest

from pigeon.errors import ValidationError
from pigeon.sandbox.faults import Fault, FaultConfig, FaultInjector


def test_default_configuration_injects_nothing() -> None:
    """Out of the box the sandbox behaves like a healthy Twilio."""
    injector = FaultInjector(seed=1)
    assert [injector.pick() for _ in range(100)] == [None] * 100
    assert injector.latency_seconds == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("error_rate", 1.5),
        ("error_rate", -0.1),
        ("rate_429", 2),
        ("delivery_failure_rate", math.nan),
        ("latency_ms", -1),
        ("latency_ms", "fast"),
        ("error_rate", True),
        ("down", "yes"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(field: str, value: object) -> None:
    """Out-of-range rates, negative latency and wrong types are refused naming the field."""
    with pytest.raises(ValidationError) as caught:
        FaultConfig().updated({field: value})
    assert caught.value.field == field


def test_unknown_setting_is_refused_by_name() -> None:
    """A typo in a setting name is reported rather than silently ignored."""
    with pytest.raises(ValidationError) as caught:
        FaultConfig().updated({"eror_rate": 0.5})
    assert caught.value.field == "eror_rate"
    assert "error_rate" in caught.value.reason


def test_partial_update_keeps_the_other_settings() -> None:
    """Updating one field leaves the rest as they were."""
    config = FaultConfig(latency_ms=20, rate_429=0.5).updated({"error_rate": 0.25})
    assert config == FaultConfig(latency_ms=20, error_rate=0.25, rate_429=0.5)


def test_down_wins_over_every_other_fault() -> None:
    """A sandbox that is down answers 503 whatever the rates say."""
    injector = FaultInjector(FaultConfig(down=True, error_rate=1, rate_429=1))
    assert injector.pick() is Fault.DOWN


def test_same_seed_gives_the_same_faults() -> None:
    """Two injectors seeded alike inject the same faults in the same order."""
    config = FaultConfig(error_rate=0.3, rate_429=0.3)
    first, second = FaultInjector(config, seed=42), FaultInjector(config, seed=42)
    assert [first.pick() for _ in range(200)] == [second.pick() for _ in range(200)]


def test_error_rate_is_roughly_honoured() -> None:
    """With error_rate 0.2 about a fifth of sends fail."""
    injector = FaultInjector(FaultConfig(error_rate=0.2), seed=7)
    failures = sum(injector.pick() is Fault.SERVER_ERROR for _ in range(5000))
    assert 850 < failures < 1150
