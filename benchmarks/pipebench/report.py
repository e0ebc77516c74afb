"""The targets of a run, and the tables on stdout (the environment: harness.runner)."""

from __future__ import annotations

from typing import Any

from harness.stacks import (
    KAFKA_POSTGRES,
    SQLITE,
)
from pipebench.echo_targets import NOT_PIGEON

PACKAGES = (
    "pigeon-notify",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "aiosqlite",
    "aiohttp",
    "uvloop",
    "httptools",
    "pydantic",
    "orjson",
)

TARGET_ACCEPTED_PER_S = 2000.0
TARGET_P99_MS = 25.0
TARGET_SMS_PER_S = 1000.0
#: steady state "keeps up" when the last SMS arrives this soon after the last accept
KEEPS_UP_SECONDS = 2.0
#: issue 3: Kafka + PostgreSQL ingest (max accepted/s) at least this share of SQLite's
TARGET_INGEST_RATIO = 0.60
#: issue 3: with the provider at +100 ms, 4 senders deliver at least this multiple of 1
TARGET_SCALE_RATIO = 3.0
SCALE_FROM, SCALE_TO = 1, 4

Results = dict[str, dict[str, dict[str, dict[str, Any]]]]


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def _scale_row(topology: str, result: dict[str, Any]) -> list[str]:
    good = [r for r in result["runs"] if "error" not in r]
    rates = " / ".join(f"{r['sms_per_s']:,.0f}" for r in good)
    counts = "/".join(str(r["senders"]) for r in good)
    speedup = scale_ratio(result)
    target = "-"
    if speedup is not None:
        target = f">= {TARGET_SCALE_RATIO:g}x {verdict(speedup >= TARGET_SCALE_RATIO)}"
    errors = [f"{r['senders']}: {r['error'][:40]}" for r in result["runs"] if "error" in r]
    return [
        topology,
        f"scale-out, {counts} senders, provider +{result['provider_latency_ms']:g} ms",
        f"{rates} SMS/s",
        f"{SCALE_TO} vs {SCALE_FROM} = {speedup:.2f}x"
        if speedup is not None
        else "; ".join(errors),
        target,
    ]


def _row(topology: str, name: str, result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return [topology, name, "ERROR", result["error"][:60], ""]
    if name == "scale_out":
        return _scale_row(topology, result)
    if name == "accept_max":
        lat = result["latency"]
        rate = result["accepted_per_s"]
        return [
            topology,
            "max accepted/s (closed loop)",
            f"{rate:,.0f}/s",
            f"p50 {lat.get('p50_ms', 0):.1f} ms, p99 {lat.get('p99_ms', 0):.1f} ms, "
            f"errors {result['errors']}",
            f">= {TARGET_ACCEPTED_PER_S:,.0f}/s {verdict(rate >= TARGET_ACCEPTED_PER_S)}",
        ]
    if name == "webhook_latency":
        lat = result["latency"]
        return [
            topology,
            f"status webhooks @ {result['rate_per_s']:.0f} sends/s (open loop)",
            f"p99 {lat.get('p99_ms', 0):.1f} ms",
            f"p50 {lat.get('p50_ms', 0):.1f} ms, max {lat.get('max_ms', 0):.1f} ms; "
            f"{result['webhooks']:,} webhooks for {result['accepted']:,} sends, "
            f"{result['delivered_webhooks']:,} 'delivered'",
            "",
        ]
    if name == "accept_batch":
        lat = result["latency"]
        return [
            topology,
            f"max accepted/s in batches of {result['batch_size']} (closed loop)",
            f"{result['accepted_per_s']:,.0f}/s",
            f"{result['connections']} connections, batch p50 {lat.get('p50_ms', 0):.0f} ms, "
            f"p99 {lat.get('p99_ms', 0):.0f} ms, errors {result['errors']}",
            "",
        ]
    if name == "accept_latency":
        lat = result["latency"]
        p99 = lat.get("p99_ms", float("inf"))
        return [
            topology,
            f"accept latency @ {result['rate_per_s']:.0f}/s (open loop)",
            f"p99 {p99:.1f} ms",
            f"p50 {lat.get('p50_ms', 0):.1f}, max {lat.get('max_ms', 0):.1f} ms, "
            f"late >5ms {result['late_dispatches_over_5ms']}, errors {result['errors']}",
            f"<= {TARGET_P99_MS:.0f} ms {verdict(p99 <= TARGET_P99_MS and not result['errors'])}",
        ]
    if name in ("drain", "drain_history"):
        rate = result["sms_per_s"]
        held = result.get("history", {}).get("rows_now", {}).get("notifications")
        return [
            topology,
            f"end-to-end drain of {result['count']:,}"
            + (f" ({held:,} in the store)" if held else ""),
            f"{rate:,.0f} SMS/s",
            f"{result['first_to_last_seconds']:.1f} s first->last SMS, "
            f"sender start {result['sender_start_seconds']:.1f} s, "
            f"settled +{result['settled_after_last_sms_seconds']:.1f} s",
            f">= {TARGET_SMS_PER_S:,.0f}/s "
            f"{verdict(rate >= TARGET_SMS_PER_S and result['complete'])}",
        ]
    if name == "idle":
        pickup = result["pickup_after_202_ms"]
        cpu = result["cpu_percent_of_one_core"]
        busiest = max((v for k, v in cpu.items() if k not in NOT_PIGEON), default=0.0)
        return [
            topology,
            f"idle for {result['idle_seconds']:.0f} s, then single requests",
            f"busiest process {busiest:.2f} %",
            f"202 -> provider p50 {pickup.get('p50_ms', 0):.1f} ms, "
            f"max {pickup.get('max_ms', 0):.1f} ms",
            "",
        ]
    e2e = result["end_to_end_latency"]
    tail = result["first_accept_to_last_sms_seconds"] - result["seconds"]
    return [
        topology,
        f"steady state @ {result['rate_per_s']:.0f}/s for {result['seconds']:.0f} s",
        f"{result['sms_per_s']:,.0f} SMS/s",
        f"accept->inbox p50 {e2e.get('p50_ms', 0):.0f} ms, p99 {e2e.get('p99_ms', 0):.0f} ms, "
        f"max {e2e.get('max_ms', 0):.0f} ms",
        f"keeps up: {'yes' if tail <= KEEPS_UP_SECONDS else 'no'}",
    ]


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def table(env: dict[str, Any], results: Results) -> str:
    """The readable summary printed at the end: one row per stack, topology and scenario."""
    head = ["stack", "topology", "measurement", "result", "details", "target"]
    rows = [head] + [
        [stack, *_row(topology, name, result)]
        for stack, by_topology in results.items()
        for topology, by_name in by_topology.items()
        for name, result in by_name.items()
    ]
    servers = "".join(
        f", {label} {env[key]}"
        for key, label in (("postgresql", "PostgreSQL"), ("tansu", "Tansu"))
        if env.get(key)
    )
    lines = [
        f"Pigeon pipeline benchmark - {env['date']}",
        f"{env['cpu_count']} cores, Python {env['python']}, SQLite {env['sqlite']}{servers}, "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v),
        "",
        *_aligned(rows),
    ]
    return "\n".join(lines)


def cpu_lines(results: Results) -> str:
    """CPU use per process and scenario (% of one core), to see what saturates."""
    lines = ["", "CPU per process during each measurement (% of one core):"]
    for stack, by_topology in results.items():
        for topology, by_name in by_topology.items():
            for name, result in by_name.items():
                measured = [(name, result)]
                if name == "scale_out" and "runs" in result:
                    measured = [(f"scale_out/{r['senders']}", r) for r in result["runs"]]
                for label, figures in measured:
                    cpu = figures.get("cpu_percent_of_one_core")
                    if cpu:
                        shown = ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items())
                        lines.append(f"  {stack:14} {topology:9} {label:15} {shown}")
    return "\n".join(lines)


# -- scale-out and the stack comparison ------------------------------------


def scale_ratio(scale: dict[str, Any]) -> float | None:
    """SMS/s with 4 senders divided by SMS/s with 1 (``None`` unless both were measured)."""
    by_count = {r["senders"]: r for r in scale.get("runs", []) if "error" not in r}
    low, high = by_count.get(SCALE_FROM), by_count.get(SCALE_TO)
    if not low or not high or not low["sms_per_s"] or not low["complete"]:
        return None
    if not high["complete"]:
        return None
    return float(high["sms_per_s"]) / float(low["sms_per_s"])


def scale_out_lines(results: Results) -> str:
    """Every point of every scale-out curve."""
    head = [
        "stack",
        "senders",
        "in flight each",
        "SMS/s from ready",
        "vs 1",
        "ready after",
        "before ready",
        "ready->last",
        "SMS/s first->last",
        "dupl.",
        "senders CPU",
        "other CPU",
    ]
    rows = [head]
    for stack, by_topology in results.items():
        scale = by_topology.get("split", {}).get("scale_out")
        if not scale or "runs" not in scale:
            continue
        for r in scale["runs"]:
            if "error" in r:
                rows.append([stack, str(r["senders"]), "ERROR", r["error"][:60], *[""] * 8])
                continue
            cpu = r.get("cpu_percent_of_one_core", {})
            senders_cpu = sum(v for k, v in cpu.items() if k.startswith("sms-sender"))
            speedup = r.get("speedup_vs_1")
            rows.append(
                [
                    stack,
                    str(r["senders"]),
                    str(r["sender_concurrency"]),
                    f"{r['sms_per_s']:,.1f}" + ("" if r["complete"] else " (incomplete)"),
                    f"{speedup:.2f}x" if speedup is not None else "-",
                    f"{r['ready_after_spawn_seconds']:.1f} s",
                    str(r["delivered_before_ready"]),
                    f"{r['ready_to_last_seconds']:.1f} s",
                    f"{r['sms_per_s_first_to_last']:,.1f}",
                    str(r["duplicates"]),
                    f"{senders_cpu:.0f}%",
                    f"{cpu.get('other', 0):.0f}%",
                ]
            )
    if len(rows) == 1:
        return ""
    first = next(
        (
            by_topology["split"]["scale_out"]
            for by_topology in results.values()
            if "runs" in by_topology.get("split", {}).get("scale_out", {})
        ),
        {},
    )
    return "\n".join(
        [
            "",
            f"Scale-out: {first.get('count', '?')} preloaded, sandbox +"
            f"{first.get('provider_latency_ms', 0):g} ms per send, "
            f"PIGEON_SENDER_CONCURRENCY={first.get('sender_concurrency', '?')} per sender; "
            + (
                "senders started first, SMS/s counted from the first request to the last SMS"
                if first.get("start") == "joined"
                else "SMS/s counted from when every sender held its partitions to the last SMS"
            ),
            *_aligned(rows),
        ]
    )


def _ingest(results: Results, stack: str, topology: str) -> float | None:
    accept = results.get(stack, {}).get(topology, {}).get("accept_max", {})
    rate = accept.get("accepted_per_s")
    return float(rate) if rate else None


def comparisons(results: Results) -> tuple[list[dict[str, Any]], str]:
    """The issue's two targets (and the stacks side by side); JSON verdicts and printable lines.

    Ingest is the closed-loop max accepted/s; the verdict uses ``split`` (the
    deployment the production section describes), or the first topology both
    stacks ran the measurement in.
    """
    verdicts: list[dict[str, Any]] = []
    lines = ["", "Kafka + PostgreSQL versus SQLite (same machine, same topology):"]
    head = ["topology", "measurement", SQLITE, KAFKA_POSTGRES, "kafka-postgres / sqlite"]
    rows = [head]
    topologies = [
        t
        for t in ("echo", "split", "single", "api-only")
        if any(t in by for by in results.values())
    ]
    for topology in topologies:
        for name, label, key in (
            ("accept_max", "max accepted/s", ("accepted_per_s",)),
            ("accept_latency", "accept p99 ms (lower: better)", ("latency", "p99_ms")),
            ("drain", "drain SMS/s", ("sms_per_s",)),
            ("steady", "steady SMS/s", ("sms_per_s",)),
        ):
            values = [
                _figure(results, stack, topology, name, key) for stack in (SQLITE, KAFKA_POSTGRES)
            ]
            if all(v is None for v in values):
                continue
            a, b = values
            ratio = f"{b / a:.0%}" if a and b is not None else "-"
            rows.append([topology, label, _num(a), _num(b), ratio])
    if len(rows) > 1:
        lines += _aligned(rows)
    else:
        lines.append("  (not both stacks measured)")
    lines += ["", "Targets (issue 3):"]
    ingest_topology = next(
        (
            t
            for t in ("split", *topologies)
            if _ingest(results, SQLITE, t) and _ingest(results, KAFKA_POSTGRES, t) is not None
        ),
        None,
    )
    goal = f"Kafka + PostgreSQL ingest >= {TARGET_INGEST_RATIO:.0%} of SQLite's"
    if ingest_topology is None:
        verdicts.append({"target": goal, "measured": "not measured", "met": None})
    else:
        sqlite_rate = _ingest(results, SQLITE, ingest_topology) or 0.0
        kafka_rate = _ingest(results, KAFKA_POSTGRES, ingest_topology) or 0.0
        share = kafka_rate / sqlite_rate
        verdicts.append(
            {
                "target": goal,
                "topology": ingest_topology,
                "measured": f"{kafka_rate:,.0f}/s vs {sqlite_rate:,.0f}/s = {share:.0%}",
                "ratio": share,
                "met": share >= TARGET_INGEST_RATIO,
            }
        )
    for stack, by_topology in results.items():
        scale = by_topology.get("split", {}).get("scale_out")
        if scale is None:
            continue
        goal = (
            f"{SCALE_TO} senders >= {TARGET_SCALE_RATIO:g}x {SCALE_FROM} sender at provider "
            f"+{scale.get('provider_latency_ms', 0):g} ms ({stack})"
        )
        speedup = scale_ratio(scale) if "runs" in scale else None
        if speedup is None:
            verdicts.append(
                {"target": goal, "stack": stack, "measured": "not measured", "met": None}
            )
            continue
        runs = {r["senders"]: r for r in scale["runs"] if "error" not in r}
        verdicts.append(
            {
                "target": goal,
                "stack": stack,
                "measured": f"{runs[SCALE_TO]['sms_per_s']:,.1f} vs "
                f"{runs[SCALE_FROM]['sms_per_s']:,.1f} SMS/s = {speedup:.2f}x",
                "ratio": speedup,
                "met": speedup >= TARGET_SCALE_RATIO,
            }
        )
    for v in verdicts:
        where = f" [{v['topology']}, max accepted/s]" if "topology" in v else ""
        shown = "not measured" if v["met"] is None else verdict(bool(v["met"]))
        lines.append(f"  {v['target']}{where}: {v['measured']} -> {shown}")
    return verdicts, "\n".join(lines)


def _figure(
    results: Results, stack: str, topology: str, name: str, key: tuple[str, ...]
) -> float | None:
    value: Any = results.get(stack, {}).get(topology, {}).get(name)
    if not value or "error" in value:
        return None
    for part in key:
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
