"""What a comparison run (direct call versus Pigeon) does: scenarios, designs, rates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.stacks import SHORT_NAMES, SQLITE, STACKS

SCENARIOS = ("latency", "outage", "throughput")
DESIGNS = ("direct", "pigeon")
PIGEON = "pigeon"


def pigeon_run(stack: str) -> str:
    """The name of Pigeon's runs on ``stack`` in the results (``pigeon-sqlite``, ...)."""
    return f"{PIGEON}-{stack}"


def is_pigeon(run: str) -> bool:
    """True for a Pigeon run (on any stack; plain ``pigeon`` in older reports)."""
    return run == PIGEON or run.startswith(f"{PIGEON}-")


def run_stack(run: str) -> str | None:
    """The stack a Pigeon run used (``None`` for the direct design or an unnamed one)."""
    stack = run.removeprefix(f"{PIGEON}-")
    return stack if is_pigeon(run) and stack in STACKS else None


def ordered_runs(names: Iterable[object]) -> list[str]:
    """Runs in report order: the direct design first, then Pigeon on each stack in turn."""
    runs = list(dict.fromkeys(str(n) for n in names))
    order = {stack: i for i, stack in enumerate(STACKS)}

    def key(run: str) -> tuple[int, str]:
        return order.get(run_stack(run) or "", -1), run

    pigeons = sorted((r for r in runs if is_pigeon(r)), key=key)
    return [r for r in runs if not is_pigeon(r)] + pigeons


def run_label(run: str) -> str:
    """How the report names a run: ``direct``, ``pigeon (SQLite)``, ``pigeon (Kafka + ...)``."""
    stack = run_stack(run)
    return f"{PIGEON} ({SHORT_NAMES[stack]})" if stack else run


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
    #: the stacks Pigeon runs on (``sqlite``, ``kafka-postgres``); each is a run of its own
    stacks: tuple[str, ...] = (SQLITE,)
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
        if not self.stacks:
            raise ValueError(f"no stack given; choose from {', '.join(STACKS)}")
        for name in self.stacks:
            if name not in STACKS:
                raise ValueError(f"unknown stack {name!r}; choose from {', '.join(STACKS)}")
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

    @property
    def runs(self) -> tuple[str, ...]:
        """What is measured, in order: ``direct``, then Pigeon on each chosen stack."""
        runs: list[str] = []
        for design in self.designs:
            if design == PIGEON:
                runs += [pigeon_run(stack) for stack in self.stacks]
            else:
                runs.append(design)
        return tuple(dict.fromkeys(runs))

    def to_json(self) -> dict[str, Any]:
        """The options as JSON-ready values."""
        return asdict(self)
