"""What a ``pigeon bench`` run does: scenarios, designs, rates and durations."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

SCENARIOS = ("latency", "outage", "throughput")
DESIGNS = ("direct", "pigeon")


@dataclass(frozen=True)
class BenchOptions:
    """Every knob of a run; :meth:`quick` is the few-seconds smoke version.

    The default arrival rate, 50/s, is below what either design can take at
    every provider latency measured (the direct design sends through a pool of
    64 connections: 64/s at 1 s per send), so the latency scenario compares
    architectures rather than overloads.
    """

    scenarios: tuple[str, ...] = SCENARIOS
    designs: tuple[str, ...] = DESIGNS
    #: latency scenario: fixed arrival rate, warm-up and measured seconds per step
    rate: float = 50.0
    warmup: float = 2.0
    duration: float = 8.0
    latencies_ms: tuple[float, ...] = (0.0, 50.0, 200.0, 1000.0)
    #: provider latency during the outage and throughput scenarios
    provider_latency_ms: float = 200.0
    #: outage scenario: a run of ``outage_run`` s, the sender down from ``outage_at`` s
    outage_run: float = 30.0
    outage_at: float = 10.0
    outage_length: float = 10.0
    #: how long to wait for the last deliveries after a run
    drain_timeout: float = 120.0
    #: throughput scenario: doubling steps from ``start_rate`` up to ``max_rate``, then bisection
    start_rate: float = 25.0
    max_rate: float = 3200.0
    refine_steps: int = 2
    step_warmup: float = 1.0
    step_seconds: float = 5.0
    #: a step is sustained when this share is answered 2xx and p99 stays within the SLO
    min_ok_fraction: float = 0.99
    slo_ms: float = 1000.0
    #: delivery keeps up when the window's delivered/s reach this share of the offered rate
    keep_up_fraction: float = 0.95
    request_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in self.scenarios:
            if name not in SCENARIOS:
                raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
        for name in self.designs:
            if name not in DESIGNS:
                raise ValueError(f"unknown design {name!r}; choose from {', '.join(DESIGNS)}")
        if not self.outage_at + self.outage_length <= self.outage_run:
            raise ValueError("the outage must end before the outage run does")
        if self.rate <= 0 or self.start_rate <= 0 or self.max_rate < self.start_rate:
            raise ValueError("rates must be positive, and max_rate at least start_rate")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchOptions:
        """Short runs for a smoke test: every scenario in well under two minutes."""
        base = cls(
            rate=20.0,
            warmup=0.5,
            duration=2.0,
            latencies_ms=(0.0, 200.0),
            outage_run=6.0,
            outage_at=2.0,
            outage_length=2.0,
            drain_timeout=30.0,
            start_rate=20.0,
            max_rate=40.0,
            refine_steps=0,
            step_warmup=0.5,
            step_seconds=2.0,
        )
        return replace(base, **overrides)

    def to_json(self) -> dict[str, Any]:
        """The options as JSON-ready values."""
        return asdict(self)
