"""``pigeon status``: one screen read from a ``/metrics`` endpoint.

The endpoint is any Pigeon API's (by default the local ``pigeon run``'s), so
the summary shows what Prometheus would: lag per consumer group, breaker
states, dead letters waiting, the outbox, and the last minute's rates.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from pigeon.errors import ConfigurationError
from pigeon.metrics.summary import Snapshot, snapshot

#: how long reading the endpoint may take
FETCH_TIMEOUT_SECONDS = 10.0
#: the part of a retry topic's name after the topic (``<topic>.retry.<group>``)
_RETRY = ".retry."
#: where the endpoint is set (the CLI's --url sets it too)
SETTING = "PIGEON_METRICS_URL"


def read(url: str) -> Snapshot:
    """Scrape ``url`` and read the summary from it; an endpoint that does not answer with
    metrics is a :class:`ConfigurationError` naming the setting (or ``--url``)."""
    # imported here, the CLI's alone: 'pigeon run' does without httpx (~10 MB per process)
    import httpx

    try:
        response = httpx.get(url, timeout=FETCH_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise ConfigurationError(
            SETTING,
            f"cannot read metrics from {url} ({type(exc).__name__}: {exc}); is Pigeon running "
            "there? Give its API's /metrics with --url or PIGEON_METRICS_URL",
        ) from exc
    if response.status_code != 200:
        raise ConfigurationError(SETTING, f"{url} answered {response.status_code}, not metrics")
    try:
        return snapshot(text_string_to_metric_families(response.text))
    except ValueError as exc:
        raise ConfigurationError(
            SETTING, f"{url} did not answer Prometheus metrics: {exc}"
        ) from exc


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}/s" if value < 100 else f"{value:.0f}/s"


def render(snap: Snapshot, source: str, now: datetime | None = None) -> str:
    """The screen: one section per question an operator asks first."""
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"Pigeon status  {source}  {moment}", ""]
    r = snap.rates.get
    window = f"last {snap.window_seconds:.0f} s" if snap.window_seconds else "no earlier sample"
    lines += [
        f"Rates ({window})",
        f"  notifications  accepted {_rate(r('accepted'))}  delivered {_rate(r('delivered'))}"
        f"  failed {_rate(r('failed'))}",
        f"  sender         provider sends {_rate(r('provider_sends'))}"
        f"  errors {_rate(r('provider_errors'))}  retries {_rate(r('retries'))}"
        f"  dead letters {_rate(r('dead_letters'))}",
        f"  API            {_rate(r('http_requests'))} requests",
        "",
    ]
    lines += _lag_lines(snap)
    lines.append("")
    breakers = "  ".join(f"{name} {state}" for name, state in snap.breakers.items())
    lines.append(f"Circuit breakers      {breakers or '- (no sender reports yet)'}")
    dead = snap.dead_letters_waiting
    hint = "  (pigeon dlq list)" if dead else ""
    lines.append(f"Dead letters waiting  {dead if dead is not None else '-'}{hint}")
    if snap.outbox_rows is not None:
        age = snap.outbox_oldest_age_seconds or 0.0
        lines.append(f"Outbox                {snap.outbox_rows} rows waiting, oldest {age:.1f} s")
    return "\n".join(lines)


def _lag_lines(snap: Snapshot) -> list[str]:
    if not snap.lags:
        return ["Consumer lag          - (not measured by this endpoint)"]
    groups: dict[str, dict[str, int]] = {}
    worst: dict[str, tuple[int, str]] = {}
    for item in snap.lags:
        entry = groups.setdefault(item.group, {"lag": 0, "retries": 0, "behind": 0, "parts": 0})
        if _RETRY in item.topic:
            entry["retries"] += item.lag
            continue
        entry["lag"] += item.lag
        entry["parts"] += 1
        if item.lag:
            entry["behind"] += 1
        if item.lag > worst.get(item.group, (0, ""))[0]:
            worst[item.group] = (item.lag, f"{item.topic}[{item.partition}]")
    width = max(len(g) for g in groups)
    lines = [f"Consumer lag          {'group':{width}}  {'lag':>8}  {'retries':>8}  behind"]
    for group, e in sorted(groups.items()):
        most = worst.get(group)
        behind = f"{e['behind']} of {e['parts']} partitions"
        if most is not None:
            behind += f", most {most[0]} on {most[1]}"
        lines.append(
            f"                      {group:{width}}  {e['lag']:>8}  {e['retries']:>8}  {behind}"
        )
    return lines
