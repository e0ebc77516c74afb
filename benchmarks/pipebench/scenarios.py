"""The measurements. Each runs on a fresh data folder and fresh processes.

Topologies: ``split`` runs the sandbox, the API and each worker as separate
processes; ``single`` runs everything in one ``pigeon run`` process.
``api-only`` (diagnostic) is the split topology without workers, so the API
has both cores to itself (minus the load generator).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from pigeon.bench.sandbox_client import arrivals, wait_for_inbox
from pipebench.cluster import Cluster, cpu_percent
from pipebench.load import Requests, closed_loop, open_loop, preload, summarize_ms

Result = dict[str, Any]


@dataclass(frozen=True)
class Options:
    """Knobs shared by the scenarios (see ``bench_pipeline.py --help``)."""

    connections: int
    warmup: float
    duration: float
    rate: float
    drain_count: int
    steady_rate: float
    steady_seconds: float
    drain_timeout: float


async def start(cluster: Cluster, topology: str) -> None:
    """Start ``topology`` on ``cluster``."""
    if topology == "single":
        await cluster.start_single()
    elif topology == "api-only":
        await cluster.start_split(workers=())
    else:
        await cluster.start_split()


async def measured(cluster: Cluster, run: Callable[[], Awaitable[Result]]) -> Result:
    """Run ``run()`` and add the CPU use of every process during it."""
    cpu0, t0 = cluster.cpu(), time.perf_counter()
    result = await run()
    elapsed = time.perf_counter() - t0
    result["cpu_percent_of_one_core"] = cpu_percent(cpu0, cluster.cpu(), elapsed)
    cluster.check_alive()
    return result


async def accept_throughput(cluster: Cluster, topology: str, opts: Options) -> Result:
    """Max accepted/s: closed loop, ``connections`` connections, window after a warm-up."""
    await start(cluster, topology)
    requests = Requests(cluster.api_url, cluster.api_key, "max")

    async def run() -> Result:
        res = await closed_loop(
            requests, connections=opts.connections, warmup=opts.warmup, duration=opts.duration
        )
        return {
            "connections": opts.connections,
            "window_seconds": res.window_seconds,
            "accepted": res.accepted,
            "accepted_per_s": res.accepted / res.window_seconds,
            "statuses": {str(k): v for k, v in sorted(res.statuses.items())},
            "errors": sum(v for k, v in res.statuses.items() if k != 202),
            "latency": summarize_ms(res.latencies),
        }

    return await measured(cluster, run)


async def accept_latency(cluster: Cluster, topology: str, opts: Options) -> Result:
    """Accept latency at a fixed rate, open loop, from the intended send time."""
    await start(cluster, topology)
    requests = Requests(cluster.api_url, cluster.api_key, "lat")

    async def run() -> Result:
        res = await open_loop(requests, rate=opts.rate, warmup=opts.warmup, duration=opts.duration)
        lags = summarize_ms(res.dispatch_lags)
        return {
            "rate_per_s": opts.rate,
            "window_seconds": res.window_seconds,
            "sent": len(res.latencies),
            "statuses": {str(k): v for k, v in sorted(res.statuses.items())},
            "errors": sum(v for k, v in res.statuses.items() if k != 202),
            "latency": summarize_ms(res.latencies),
            "late_dispatches_over_5ms": res.late_dispatches,
            "dispatch_lag": lags,
        }

    return await measured(cluster, run)


async def sandbox_stats(cluster: Cluster) -> dict[str, Any]:
    """The sandbox's counters (accepted, callbacks delivered and failed, ...)."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{cluster.sandbox_url}/sandbox/stats") as response,
        ):
            stats: dict[str, Any] = await response.json()
    except aiohttp.ClientError:
        return {}
    return stats


async def outcome(cluster: Cluster) -> Result:
    """What became of the notifications once the pipeline settled."""
    lag, _ = await wait_settled(cluster, 60.0)
    return {
        "lag_at_end": lag,
        "sandbox_stats": await sandbox_stats(cluster),
        "notification_statuses": await asyncio.to_thread(cluster.status_counts),
    }


async def wait_inbox(cluster: Cluster, count: int, within: float) -> tuple[int, float]:
    """Poll ``/sandbox/stats`` until ``count`` messages arrived; returns (arrived, time.time())."""
    arrived = await wait_for_inbox(
        cluster.sandbox_url, count, within, check=cluster.check_alive, interval=0.02
    )
    return arrived, time.time()


async def inbox_times(cluster: Cluster, tag: str) -> dict[int, float]:
    """Arrival time in the sandbox of every message tagged ``tag``, by its sequence number."""
    return (await arrivals(cluster.sandbox_url, tag)).times


async def wait_settled(
    cluster: Cluster, within: float, *, ignore: str = "\0"
) -> tuple[dict[str, int], float]:
    """Wait until the sandbox made every status callback and every group read the log to its end.

    Each accepted SMS gets two callbacks (``sent``, ``delivered``) that the API
    turns into events; only then can the status projector finish.
    """
    deadline = time.monotonic() + within
    while True:
        stats = await sandbox_stats(cluster)
        calls = int(stats.get("callbacks_delivered", 0)) + int(stats.get("callbacks_failed", 0))
        lag = {k: v for k, v in (await asyncio.to_thread(cluster.lag)).items() if ignore not in k}
        done = calls >= 2 * int(stats.get("accepted", 0)) and not any(lag.values())
        if done or time.monotonic() > deadline:
            return lag, time.time()
        cluster.check_alive()
        await asyncio.sleep(0.1)


async def drain(cluster: Cluster, topology: str, opts: Options) -> Result:
    """Preload with the sender stopped, then start it and time the inbox filling up."""
    if topology == "single":
        cluster.spawn("api", "api")
        await cluster.wait_http(f"{cluster.api_url}/healthz")
    else:
        await cluster.start_split(workers=("usage-meter", "status-projector"))
    requests = Requests(cluster.api_url, cluster.api_key, "drain")
    loaded = await preload(requests, opts.drain_count, connections=opts.connections)
    count = int(loaded["accepted"])
    if topology == "single":
        cluster.stop("api")
    else:
        await wait_settled(cluster, opts.drain_timeout, ignore="sms-sender")
    cpu0 = cluster.cpu()
    spawned = time.time()
    if topology == "single":
        cluster.spawn("run", "run")
    else:
        cluster.spawn("sms-sender", "worker", "sms-sender")
    arrived, done = await wait_inbox(cluster, count, opts.drain_timeout)
    cpu = cpu_percent(cpu0, cluster.cpu(), done - spawned)
    _, settled = await wait_settled(cluster, opts.drain_timeout)
    times = sorted((await inbox_times(cluster, "drain")).values())
    first, last = times[0], times[-1]
    return {
        "preload": loaded,
        "count": count,
        "arrived": arrived,
        "complete": arrived >= count,
        "sender_start_seconds": first - spawned,
        "first_to_last_seconds": last - first,
        "sms_per_s": (len(times) - 1) / (last - first) if last > first else 0.0,
        "sms_per_s_including_start": len(times) / (last - spawned),
        "settled_after_last_sms_seconds": settled - last,
        "cpu_percent_of_one_core": cpu,
        **await outcome(cluster),
    }


async def steady(cluster: Cluster, topology: str, opts: Options) -> Result:
    """All workers running, posting at a fixed rate: accept-to-inbox time per message."""
    await start(cluster, topology)
    requests = Requests(cluster.api_url, cluster.api_key, "steady")

    async def run() -> Result:
        res = await open_loop(
            requests,
            rate=opts.steady_rate,
            warmup=0.0,
            duration=opts.steady_seconds,
            keep_warmup=True,
        )
        accepted = len(res.accepted_at)
        arrived, _ = await wait_inbox(cluster, accepted, opts.drain_timeout)
        times = await inbox_times(cluster, "steady")
        e2e = [times[s] - t for s, t in res.accepted_at.items() if s in times]
        first_accept = min(res.accepted_at.values())
        last_arrival = max(times.values())
        return {
            "rate_per_s": opts.steady_rate,
            "seconds": opts.steady_seconds,
            "accepted": accepted,
            "arrived": arrived,
            "errors": sum(v for k, v in res.statuses.items() if k != 202),
            "late_dispatches_over_5ms": res.late_dispatches,
            "first_accept_to_last_sms_seconds": last_arrival - first_accept,
            "sms_per_s": len(e2e) / (last_arrival - first_accept),
            "accept_latency": summarize_ms(res.latencies),
            "end_to_end_latency": summarize_ms(e2e),
        }

    result = await measured(cluster, run)
    return result | await outcome(cluster)


SCENARIOS: dict[str, Callable[[Cluster, str, Options], Awaitable[Result]]] = {
    "accept_max": accept_throughput,
    "accept_latency": accept_latency,
    "drain": drain,
    "steady": steady,
}


async def run_scenario(name: str, topology: str, opts: Options, root: Path) -> Result:
    """Run one scenario on fresh processes and a fresh data folder; always stop them."""
    cluster = Cluster(root / f"{topology}-{name}")
    cluster.root.mkdir(parents=True)
    try:
        await asyncio.to_thread(cluster.create_key)
        result = await SCENARIOS[name](cluster, topology, opts)
        result["processes"] = {name: proc.pid for name, proc in cluster.procs.items()}
        return result
    finally:
        await asyncio.to_thread(cluster.stop)
