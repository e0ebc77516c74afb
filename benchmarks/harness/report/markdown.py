"""``summary.md``: the run's figures as tables, absolute and as ratios."""

from __future__ import annotations

import math
from typing import Any

from harness.machine import describe
from harness.options import is_pigeon, ordered_runs, run_label, run_stack
from harness.stacks import DESCRIPTIONS, SHORT_NAMES

CHART_TITLES = {
    "latency.png": "Accept latency versus provider latency",
    "outage.png": "Requests and deliveries per second around the outage",
    "throughput.png": "Accepted and delivered per second versus offered rate",
}


def ms(value: float | None) -> str:
    """A duration in milliseconds for a table cell ('-' when unknown)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"


def per_s(value: float | None) -> str:
    """A rate for a table cell."""
    return "-" if value is None else f"{value:,.0f}/s"


def ratio(numerator: float | None, denominator: float | None) -> str:
    """``a/b`` as a percentage below 1 and as a multiple above ('-' when unknown)."""
    if numerator is None or denominator is None or not denominator:
        return "-"
    value = numerator / denominator
    return f"{value:.1%}" if value < 1 else f"{value:,.2f}x"


#: above this much CPU (% of one core) used by other processes, a section carries a warning
BUSY_MACHINE_PERCENT = 25.0


def other_load(scenario: object) -> list[float]:
    """Every ``other`` CPU figure (% of one core) recorded anywhere in a scenario's results."""
    found: list[float] = []
    if isinstance(scenario, dict):
        cpu = scenario.get("cpu_percent_of_one_core")
        if isinstance(cpu, dict) and "other" in cpu:
            found.append(float(cpu["other"]))
        for key, value in scenario.items():
            if key != "cpu_percent_of_one_core":
                found += other_load(value)
    elif isinstance(scenario, list):
        for item in scenario:
            found += other_load(item)
    return found


def load_note(scenario: dict[str, Any]) -> list[str]:
    """A line on what else ran on the machine during the scenario's measurements."""
    loads = other_load(scenario)
    if not loads:
        return []
    mean, top = sum(loads) / len(loads), max(loads)
    line = (
        f"Other processes on the machine used {mean:.0f}% of one core on average "
        f"(at most {top:.0f}%) during these measurements."
    )
    if mean > BUSY_MACHINE_PERCENT:
        line += " **The machine was busy: these figures are not representative of it.**"
    return ["", line]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("**MET**" if met else "**MISSED**")


def _stack_name(stack: str | None) -> str:
    return SHORT_NAMES.get(stack or "", "SQLite" if stack is None else stack)


def targets_section(report: dict[str, Any]) -> list[str]:
    """The issue's targets and whether this run met them, per stack Pigeon ran on."""
    rows = [
        [
            t["name"],
            _stack_name(t.get("stack")),
            t["goal"],
            t["measured"],
            _verdict(t["met"]),
        ]
        for t in report.get("targets", [])
    ]
    head = ["target", "Pigeon on", "goal", "measured", "verdict"]
    return ["## Targets", "", *_table(head, rows)]


def stacks_line(report: dict[str, Any]) -> list[str]:
    """Which stack the Pigeon figures come from."""
    stacks = list(report.get("options", {}).get("stacks") or ["sqlite"])
    described = "; ".join(
        f"`{run_label('pigeon-' + s)}` = {DESCRIPTIONS.get(s, s)}" for s in stacks
    )
    return [f"Pigeon figures by stack: {described}.", ""]


def latency_section(scenario: dict[str, Any]) -> list[str]:
    """Response time versus provider latency, with Pigeon/direct ratios."""
    by_key = {(s["design"], s["provider_latency_ms"]): s for s in scenario["steps"]}
    latencies = sorted({s["provider_latency_ms"] for s in scenario["steps"]})
    runs = ordered_runs(s["design"] for s in scenario["steps"])
    rows = []
    for latency in latencies:
        for design in runs:
            step = by_key.get((design, latency))
            if step is None:
                continue
            lat = step["latency_ms"]
            rows.append(
                [
                    f"+{latency:g} ms",
                    run_label(design),
                    ms(lat.get("p50_ms")),
                    ms(lat.get("p95_ms")),
                    ms(lat.get("p99_ms")),
                    ms(lat.get("max_ms")),
                    f"{step['errors']} / {step['timeouts']}",
                    str(step["late_dispatches_over_5ms"]),
                ]
            )
        direct = by_key.get(("direct", latency))
        for run in (r for r in runs if is_pigeon(r)):
            pigeon = by_key.get((run, latency))
            if not pigeon or not direct:
                continue
            p, d = pigeon["latency_ms"], direct["latency_ms"]
            rows.append(
                [
                    f"+{latency:g} ms",
                    f"*{run_label(run)} / direct*",
                    *(f"*{ratio(p.get(k), d.get(k))}*" for k in ("p50_ms", "p95_ms", "p99_ms")),
                    f"*{ratio(p.get('max_ms'), d.get('max_ms'))}*",
                    "",
                    "",
                ]
            )
    head = ["provider", "design", "p50", "p95", "p99", "max", "errors / timeouts", "late sends"]
    return [
        "## Response time versus provider latency",
        "",
        f"{scenario['rate_per_s']:g} requests/s, open loop; latency from each request's intended "
        "send time to its answer (2xx only; errors and timeouts counted apart).",
        "",
        *_table(head, rows),
        *load_note(scenario),
    ]


def outage_section(scenario: dict[str, Any]) -> list[str]:
    """What each design did with the requests sent around the outage."""
    rows = []
    for design in ordered_runs(scenario["designs"]):
        r = scenario["designs"][design]
        waiting = r["backlog_at_restart"]
        drain = r["time_to_drain_s"]
        from_ready = r["time_to_drain_from_ready_s"]
        drain_text = "never" if drain is None else f"{drain:.1f} s"
        if drain is not None and from_ready is not None:
            drain_text += f" ({from_ready:.1f} s after ready)"
        rows.append(
            [
                run_label(design),
                str(r["sent"]),
                str(r["accepted"]),
                f"{r['failed']} / {r['timeouts']}",
                f"**{r['lost']}**",
                str(r["accepted_not_delivered"]),
                str(r["duplicates"]),
                str(waiting),
                drain_text if waiting else "- (nothing waiting)",
                ms(r["during_outage"]["accept_latency_ms"].get("p99_ms")),
            ]
        )
    head = [
        "design",
        "sent",
        "accepted (2xx)",
        "failed / timeouts",
        "lost",
        "accepted, never delivered",
        "duplicates",
        "waiting at restart",
        "time to drain",
        "accept p99 while down",
    ]
    return [
        "## SMS service outage",
        "",
        f"{scenario['rate_per_s']:g} requests/s for {scenario['run_s']:g} s (after the warm-up); "
        f"the sender (Pigeon: `pigeon worker sms-sender`; direct: the SMS service) is stopped "
        f"{scenario['outage_at_s']:g} s in and started again {scenario['outage_length_s']:g} s "
        f"later; provider +{scenario['provider_latency_ms']:g} ms. *Lost* = sent but never in the "
        "provider's inbox. *Time to drain* runs from the restart until every message accepted "
        "before it reached the provider.",
        "",
        *_table(head, rows),
        *load_note(scenario),
    ]


def throughput_section(scenario: dict[str, Any]) -> list[str]:
    """Sustainable accepted/s and delivered/s, their ratio, and every step."""
    designs = scenario["designs"]
    runs = ordered_runs(designs)
    rows = [
        [
            run_label(design),
            per_s(r["sustainable_accepted_per_s"]),
            ms(r["p99_at_sustainable_ms"]),
            per_s(r["first_failed_rate_per_s"]),
            per_s(r["sustainable_delivered_per_s"]),
            per_s(r["peak_delivered_per_s"]),
        ]
        for design, r in ((name, designs[name]) for name in runs)
    ]
    lines = [
        "## Throughput",
        "",
        f"Provider +{scenario['provider_latency_ms']:g} ms. A rate is *sustained* when "
        f"{scenario['min_ok_fraction']:.0%} of its requests are answered 2xx with p99 within "
        f"{scenario['slo_ms']:g} ms; delivery *keeps up* when "
        f"{scenario['keep_up_fraction']:.0%} of the requests accepted in the window reached the "
        f"provider within {scenario.get('keep_up_grace_s', 2):g} s of its end. *Delivered* is "
        "the SMS reaching the provider per second during the window; *sustainable delivered* is "
        "that figure at the highest rate both sustained and kept up with.",
        "",
        *_table(
            [
                "design",
                "sustainable accepted",
                "p99 there",
                "first failing rate",
                "sustainable delivered",
                "peak delivered",
            ],
            rows,
        ),
    ]
    for run in (r for r in runs if is_pigeon(r)):
        if "direct" not in designs:
            break
        p, d = designs[run], designs["direct"]
        accepted = ratio(p["sustainable_accepted_per_s"], d["sustainable_accepted_per_s"])
        delivered = ratio(p["sustainable_delivered_per_s"], d["sustainable_delivered_per_s"])
        who = "Pigeon" if run_stack(run) is None else run_label(run)
        lines += ["", f"{who} / direct: accepted {accepted}, delivered {delivered}."]
    steps = [
        [
            run_label(design),
            per_s(s["rate_per_s"]),
            per_s(s["accepted_per_s"]),
            f"{s['ok_fraction']:.1%}",
            ms(s["latency_ms"].get("p99_ms")),
            per_s(s["delivered_per_s"]),
            "yes" if s["sustained"] else "no",
            "yes" if s["delivery_keeps_up"] else "no",
        ]
        for design, r in ((name, designs[name]) for name in runs)
        for s in r["steps"]
    ]
    head = ["design", "offered", "accepted", "2xx", "p99", "delivered", "sustained", "keeps up"]
    return [*lines, "", "Steps:", "", *_table(head, steps), *load_note(scenario)]


SECTIONS = {
    "latency": latency_section,
    "outage": outage_section,
    "throughput": throughput_section,
}


def pipeline_section(pipeline: dict[str, Any]) -> list[str]:
    """The pipeline scenarios' tables (``benchmarks/pipebench``), as the terminal shows them."""
    return ["## Pipeline", "", "```text", pipeline.get("text", "").rstrip(), "```", ""]


def render_summary(report: dict[str, Any], charts: list[str]) -> str:
    """The whole ``summary.md``: the pipeline's tables, then the comparison's sections."""
    env = report.get("environment", {})
    lines = [
        "# Pigeon benchmark",
        "",
        f"Run on {env.get('date', '?')}. Machine: {describe(env)}.",
        "",
    ]
    if "pipeline" in report:
        lines += pipeline_section(report["pipeline"])
    if not report.get("scenarios"):
        return "\n".join(lines)
    lines += [
        "## Direct call versus event-driven",
        "",
        *stacks_line(report),
        *targets_section(report),
    ]
    for name, scenario in report.get("scenarios", {}).items():
        lines.append("")
        if "error" in scenario:
            lines += [f"## {name}", "", f"Failed: `{scenario['error']}`"]
        else:
            lines += SECTIONS[name](scenario)
    if charts:
        lines += ["", "## Charts", ""]
        lines += [f"![{CHART_TITLES.get(c, c)}]({c})" for c in charts]
    lines += [
        "",
        "## Method",
        "",
        "Both designs run as separate processes on 127.0.0.1 of this machine, against the same "
        "sandbox provider, with the same request bodies. The load generator is open loop: "
        "requests leave at fixed intended times whatever the answers do, and latency is measured "
        "from the intended time (no coordinated omission); the warm-up is sent but left out; "
        "latencies go into HDR histograms (3 significant digits). *Late sends* counts requests "
        "the generator itself sent more than 5 ms late. The raw figures, CPU use per process "
        "and the encoded histograms are in `results.json`.",
        "",
    ]
    return "\n".join(lines)
