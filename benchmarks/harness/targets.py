"""The issue's targets, checked against a run's figures (never assumed).

Each Pigeon run (one per stack) is judged against the direct design on its own;
a target says which stack its figures are from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from harness.options import is_pigeon, pigeon_run, run_stack
from harness.stacks import SQLITE

P99_RATIO_MAX = 0.05
P99_AT_PROVIDER_MS = 200.0
DRAIN_MAX_S = 10.0
THROUGHPUT_RATIO_MIN = 5.0
DEFAULT_RUN = pigeon_run(SQLITE)


@dataclass(frozen=True)
class Target:
    """One target: what was measured against what was asked; ``met`` is None when not run.

    ``stack`` is the stack of the Pigeon figures it judges.
    """

    name: str
    goal: str
    measured: str
    met: bool | None
    stack: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _latency_step(scenario: dict[str, Any], design: str, provider_ms: float) -> dict[str, Any]:
    for step in scenario.get("steps", []):
        if step["design"] == design and step["provider_latency_ms"] == provider_ms:
            return dict(step)
    return {}


def p99_target(latency: dict[str, Any] | None, run: str = DEFAULT_RUN) -> Target:
    """Pigeon's p99 accept latency at most 5 % of the direct design's, provider +200 ms."""
    goal = f"Pigeon p99 <= {P99_RATIO_MAX:.0%} of direct p99 at provider +{P99_AT_PROVIDER_MS:g} ms"
    name = "accept latency p99"
    stack = run_stack(run)
    pigeon = _latency_step(latency or {}, run, P99_AT_PROVIDER_MS)
    direct = _latency_step(latency or {}, "direct", P99_AT_PROVIDER_MS)
    p_p99 = pigeon.get("latency_ms", {}).get("p99_ms")
    d_p99 = direct.get("latency_ms", {}).get("p99_ms")
    if p_p99 is None or d_p99 is None or not d_p99:
        return Target(name, goal, "not measured", None, stack)
    ratio = p_p99 / d_p99
    measured = f"{p_p99:.1f} ms vs {d_p99:.1f} ms = {ratio:.1%}"
    clean = pigeon["errors"] + pigeon["timeouts"] == 0
    return Target(name, goal, measured, ratio <= P99_RATIO_MAX and clean, stack)


def outage_targets(outage: dict[str, Any] | None, run: str = DEFAULT_RUN) -> list[Target]:
    """0 lost by Pigeon; every one delivered within 10 s of the sender coming back."""
    pigeon = (outage or {}).get("designs", {}).get(run)
    stack = run_stack(run)
    lost_goal = "0 notifications lost by Pigeon"
    drain_goal = f"every one delivered within {DRAIN_MAX_S:g} s of the sender's restart"
    if pigeon is None:
        return [
            Target("outage: lost", lost_goal, "not measured", None, stack),
            Target("outage: drain", drain_goal, "not measured", None, stack),
        ]
    lost = pigeon["lost"]
    drain = pigeon["time_to_drain_s"]
    drain_text = "never (messages missing)" if drain is None else f"{drain:.1f} s"
    return [
        Target(
            "outage: lost",
            lost_goal,
            f"{lost} lost of {pigeon['sent']} sent ({pigeon['accepted']} accepted)",
            lost == 0,
            stack,
        ),
        Target(
            "outage: drain",
            drain_goal,
            f"{drain_text} for {pigeon['backlog_at_restart']} waiting "
            f"(sender ready after {pigeon['sender_start_s']:.1f} s)",
            drain is not None and drain <= DRAIN_MAX_S and lost == 0,
            stack,
        ),
    ]


def throughput_target(throughput: dict[str, Any] | None, run: str = DEFAULT_RUN) -> Target:
    """Pigeon's sustainable accepted/s at least 5x the direct design's, provider +200 ms."""
    designs = (throughput or {}).get("designs", {})
    provider = (throughput or {}).get("provider_latency_ms")
    goal = f"Pigeon sustainable accepted/s >= {THROUGHPUT_RATIO_MIN:g}x direct at provider +200 ms"
    name = "sustainable accepted/s"
    stack = run_stack(run)
    if run not in designs or "direct" not in designs:
        return Target(name, goal, "not measured", None, stack)
    p_rate = designs[run]["sustainable_accepted_per_s"]
    d_rate = designs["direct"]["sustainable_accepted_per_s"]
    ratio = p_rate / d_rate if d_rate else math.inf
    measured = f"{p_rate:,.0f}/s vs {d_rate:,.0f}/s = {ratio:.2f}x"
    if provider != P99_AT_PROVIDER_MS:
        return Target(name, goal, f"{measured} (at provider +{provider:g} ms)", None, stack)
    return Target(name, goal, measured, ratio >= THROUGHPUT_RATIO_MIN, stack)


def pigeon_runs(scenarios: dict[str, Any]) -> list[str]:
    """The Pigeon runs (one per stack) found in the scenarios' figures, in a stable order."""
    found: list[str] = []
    for scenario in scenarios.values():
        if not isinstance(scenario, dict):
            continue
        names = [step.get("design", "") for step in scenario.get("steps", [])]
        names += list(scenario.get("designs", {}))
        found += [name for name in names if is_pigeon(name)]
    return sorted(dict.fromkeys(found), key=lambda run: (run_stack(run) != SQLITE, run))


def evaluate(scenarios: dict[str, Any], runs: list[str] | None = None) -> list[Target]:
    """Every target for each Pigeon run against the scenarios that ran.

    ``runs`` defaults to the Pigeon runs found in the figures (or Pigeon on
    SQLite when there are none); targets nobody measured are 'not measured'.
    """

    def ran(name: str) -> dict[str, Any] | None:
        scenario = scenarios.get(name)
        return None if scenario is None or "error" in scenario else dict(scenario)

    targets: list[Target] = []
    for run in runs or pigeon_runs(scenarios) or [DEFAULT_RUN]:
        targets += [
            p99_target(ran("latency"), run),
            *outage_targets(ran("outage"), run),
            throughput_target(ran("throughput"), run),
        ]
    return targets
