"""The environment a run happened in, the targets, and the table on stdout."""

from __future__ import annotations

from typing import Any

from pigeon.bench.machine import environment as machine_environment

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


def environment() -> dict[str, Any]:
    """Machine, Python and package versions (see :func:`pigeon.bench.machine.environment`)."""
    return machine_environment(PACKAGES)


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def _row(topology: str, name: str, result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return [topology, name, "ERROR", result["error"][:60], ""]
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
    if name == "drain":
        rate = result["sms_per_s"]
        return [
            topology,
            f"end-to-end drain of {result['count']:,}",
            f"{rate:,.0f} SMS/s",
            f"{result['first_to_last_seconds']:.1f} s first->last SMS, "
            f"sender start {result['sender_start_seconds']:.1f} s, "
            f"settled +{result['settled_after_last_sms_seconds']:.1f} s",
            f">= {TARGET_SMS_PER_S:,.0f}/s "
            f"{verdict(rate >= TARGET_SMS_PER_S and result['complete'])}",
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


def table(env: dict[str, Any], results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The readable summary printed at the end."""
    head = ["topology", "measurement", "result", "details", "target"]
    rows = [head] + [
        _row(topology, name, result)
        for topology, by_name in results.items()
        for name, result in by_name.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        f"Pigeon pipeline benchmark - {env['date']}",
        f"{env['cpu_count']} cores, Python {env['python']}, SQLite {env['sqlite']}, "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v),
        "",
    ]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_lines(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """CPU use per process and scenario (% of one core), to see what saturates."""
    lines = ["", "CPU per process during each measurement (% of one core):"]
    for topology, by_name in results.items():
        for name, result in by_name.items():
            cpu = result.get("cpu_percent_of_one_core")
            if cpu:
                shown = ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items())
                lines.append(f"  {topology:9} {name:15} {shown}")
    return "\n".join(lines)
