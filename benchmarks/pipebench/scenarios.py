"""The measurements. Each runs on fresh processes and a fresh store and bus.

Stacks: ``sqlite`` (a fresh data folder) or ``kafka-postgres`` (a Tansu broker
of its own and a fresh PostgreSQL schema, dropped afterwards; the outbox relay
runs as one more process). Topologies: ``split`` runs the sandbox, the API and
each worker as separate processes; ``single`` runs everything in one ``pigeon
run`` process. ``api-only`` (diagnostic) is the split topology without workers
(and without the relay), so the API has both cores to itself (minus the load
generator). ``scale_out`` runs only in ``split``: 1, 2 and 4 ``pigeon worker
sms-sender`` processes, each in a fresh cluster, draining the same backlog
with the provider slowed down.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from harness.cluster import WORKERS, Cluster
from harness.processes import cpu_percent, free_port, pss_bytes
from harness.sandbox_client import arrivals, set_faults, wait_for_inbox
from pigeon.memory import QUIET_SECONDS
from pipebench.history import multiply
from pipebench.load import (
    Requests,
    closed_loop,
    closed_loop_batches,
    open_loop,
    preload,
    summarize_ms,
)

Result = dict[str, Any]
#: every consumer worker but the sender (the drain and the scale-out start senders later)
ALL_BUT_SENDER = tuple(w for w in WORKERS if w != "sms-sender")


@dataclass(frozen=True)
class Options:
    """Knobs shared by the scenarios (see ``bench.py --help``)."""

    connections: int
    warmup: float
    duration: float
    rate: float
    drain_count: int
    steady_rate: float
    steady_seconds: float
    drain_timeout: float
    #: steady on Kafka + PostgreSQL runs at this share of ``steady_rate``: issue 9's
    #: target 8 asks that stack for target 4 "at >= 0.6 x the embedded figures"
    kafka_steady_share: float = 0.6
    #: accept_batch: notifications per batch, and connections posting batches
    batch_size: int = 500
    batch_connections: int = 4
    #: scale-out: sender processes per run, sandbox latency, backlog, concurrency per sender
    scale_senders: tuple[int, ...] = (1, 2, 4)
    scale_latency_ms: float = 100.0
    scale_count: int = 4000
    sender_concurrency: int = 8
    #: ``backlog``: preload with no sender, then start them (the clock starts once they hold
    #: their partitions); ``joined``: start the senders first, then preload
    scale_start: str = "backlog"
    #: how long the senders may take to share the partitions (Kafka: group joins)
    join_timeout: float = 60.0
    #: idle: seconds without traffic measured, then single requests timed to the provider
    idle_seconds: float = 30.0
    idle_probes: int = 5
    #: drain_history: notifications in the store before the drain, and how many of them
    #: are sent for real (the rest are copies of those: pipebench.history)
    history: int = 1_000_000
    history_seed: int = 20_000
    #: webhook_latency: open-loop sends/s (issue 11 asks for the latency under 200/s)
    webhook_rate: float = 200.0


#: where ``python -m direct`` (the baselines) lives
BASELINES = Path(__file__).resolve().parent.parent


async def start(cluster: Cluster, topology: str) -> None:
    """Start ``topology`` on ``cluster``."""
    if topology == "echo":
        argv = [sys.executable, "-m", "direct", "echo", "--port", str(cluster.api_port)]
        argv += ["--api-key", cluster.api_key]
        cluster.spawn_command("echo", argv, {"PYTHONPATH": str(BASELINES)})
        await cluster.wait_http(f"{cluster.api_url}/healthz")
    elif topology == "single":
        await cluster.start_single()
    elif topology == "api-only":
        await cluster.start_split(workers=(), relay=False)
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


async def accept_batch(cluster: Cluster, topology: str, opts: Options) -> Result:
    """Max accepted notifications/s through ``POST /v1/notifications:batch`` (closed loop)."""
    await start(cluster, topology)
    requests = Requests(cluster.api_url, cluster.api_key, "batch")

    async def run() -> Result:
        res = await closed_loop_batches(
            requests,
            size=opts.batch_size,
            connections=opts.batch_connections,
            warmup=opts.warmup,
            duration=opts.duration,
        )
        return {
            "batch_size": opts.batch_size,
            "connections": opts.batch_connections,
            "window_seconds": res.window_seconds,
            "accepted": res.accepted,
            "accepted_per_s": res.accepted / res.window_seconds,
            "statuses": {str(k): v for k, v in sorted(res.statuses.items())},
            "errors": sum(v for k, v in res.statuses.items() if k != 207),
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
    if topology == "single":  # Kafka: the API's outbox fills; 'pigeon run' relays it
        cluster.spawn("api", "api")
        await cluster.wait_http(f"{cluster.api_url}/healthz")
    else:
        await cluster.start_split(workers=ALL_BUT_SENDER)
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
    rss = cluster.rss_mb()  # after the whole backlog went through
    pss = cluster.rss_mb(pss_bytes)
    # and once the workers have been quiet long enough to hand freed memory back to
    # the system (pigeon.memory): what a dashboard shows for the rest of the lull
    await asyncio.sleep(QUIET_SECONDS + 1.0)
    pss_quiet = cluster.rss_mb(pss_bytes)
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
        "rss_mb_after": rss,
        "pss_mb_after": pss,
        "pss_mb_quiet": pss_quiet,
        **await outcome(cluster),
    }


async def drain_history(cluster: Cluster, topology: str, opts: Options) -> Result:
    """``drain`` on a store that already holds ``opts.history`` delivered notifications.

    ``opts.history_seed`` of them go through the whole pipeline first; copies of
    their rows make up the rest (:mod:`pipebench.history`). Then every process
    stops and the usual drain runs on that store and log: target 9 compares its
    rate with the fresh store's ``drain`` of the same run.
    """
    if cluster.kafka:
        raise ValueError("drain_history copies SQLite rows: run it with --stack sqlite")
    await cluster.start_split()
    requests = Requests(cluster.api_url, cluster.api_key, "history")
    seeded = await preload(requests, opts.history_seed, connections=opts.connections)
    await wait_inbox(cluster, int(seeded["accepted"]), opts.drain_timeout)
    await wait_settled(cluster, opts.drain_timeout)
    await asyncio.to_thread(cluster.stop, *list(cluster.procs))
    history = await asyncio.to_thread(multiply, cluster.db_path, opts.history)
    print(f"  history: {orjson.dumps(history).decode()}", flush=True)
    result = await drain(cluster, topology, opts)
    result["history"] = history
    return result


async def steady(cluster: Cluster, topology: str, opts: Options) -> Result:
    """All workers running, posting at a fixed rate: accept-to-inbox time per message."""
    await start(cluster, topology)
    requests = Requests(cluster.api_url, cluster.api_key, "steady")

    rate = opts.steady_rate * (opts.kafka_steady_share if cluster.kafka else 1.0)

    async def run() -> Result:
        res = await open_loop(
            requests,
            rate=rate,
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
            "rate_per_s": rate,
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


async def scale_out_run(
    cluster: Cluster, senders: int, opts: Options, tag: str = "scale"
) -> Result:
    """One point of the scale-out curve: ``senders`` processes drain a preloaded backlog.

    The sandbox adds ``scale_latency_ms`` per send; each sender has
    ``sender_concurrency`` provider calls in flight at most (set for every
    process of the cluster). The clock starts when every sender holds its share
    of the partitions (SQLite: leases; Kafka: each one's latest assignment in
    its log, together covering every partition once): SMS/s is the messages
    that reached the sandbox from then on divided by the time from then to the
    last one. With ``scale_start="joined"`` the senders hold their partitions
    before the backlog is posted, so the clock starts at the first request and
    the hand-over of partitions is not in the figure.
    """
    await cluster.start_split(workers=ALL_BUT_SENDER)
    await set_faults(cluster.sandbox_url, latency_ms=opts.scale_latency_ms)
    requests = Requests(cluster.api_url, cluster.api_key, tag)
    names = [f"sms-sender-{i + 1}" for i in range(senders)]

    async def start_senders() -> tuple[float, float]:
        spawned = time.time()
        for name in names:
            cluster.spawn(name, "worker", "sms-sender")
        await cluster.wait_members("sms-sender", names, within=opts.join_timeout)
        return spawned, time.time()

    cpu0 = cluster.cpu()
    if opts.scale_start == "joined":  # every sender has its partitions before the first request
        spawned, ready = await start_senders()
        loaded = await preload(requests, opts.scale_count, connections=opts.connections)
    else:  # the method: the backlog first, then the senders
        loaded = await preload(requests, opts.scale_count, connections=opts.connections)
        await wait_settled(cluster, opts.drain_timeout, ignore="sms-sender")
        cpu0 = cluster.cpu()
        spawned, ready = await start_senders()
    count = int(loaded["accepted"])
    arrived, done = await wait_inbox(cluster, count, opts.drain_timeout)
    cpu = cpu_percent(cpu0, cluster.cpu(), done - spawned)
    found = await arrivals(cluster.sandbox_url, tag)
    times = sorted(found.times.values())
    after_ready = [t for t in times if t >= ready]
    first, last = (times[0], times[-1]) if times else (ready, ready)
    return {
        "senders": senders,
        "start": opts.scale_start,
        "sender_concurrency": opts.sender_concurrency,
        "provider_latency_ms": opts.scale_latency_ms,
        "preload": loaded,
        "count": count,
        "arrived": arrived,
        "complete": arrived >= count,
        "duplicates": found.duplicates,
        "ready_after_spawn_seconds": ready - spawned,
        "delivered_before_ready": len(times) - len(after_ready),
        "ready_to_last_seconds": last - ready,
        "sms_per_s": len(after_ready) / (last - ready) if last > ready else 0.0,
        "first_to_last_seconds": last - first,
        "sms_per_s_first_to_last": (len(times) - 1) / (last - first) if last > first else 0.0,
        "sms_per_s_from_spawn": len(times) / (last - spawned) if last > spawned else 0.0,
        "cpu_percent_of_one_core": cpu,
        "processes": {name: proc.pid for name, proc in cluster.procs.items()},
    }


async def scale_out(stack: str, opts: Options, root: Path) -> Result:
    """The scale-out curve: a fresh cluster for each sender count, the same backlog each time."""
    runs: list[Result] = []
    for senders in opts.scale_senders:
        print(f"    {senders} sender(s) ...", flush=True)
        cluster = Cluster(
            root / f"{stack}-scale_out-{senders}",
            stack=stack,
            settings={"PIGEON_SENDER_CONCURRENCY": str(opts.sender_concurrency)},
        )
        try:
            await cluster.prepare()
            run = await scale_out_run(cluster, senders, opts)
        except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
            run = {"senders": senders, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            await asyncio.to_thread(cluster.stop)
        runs.append(run)
        print(f"    {orjson_line(run)}", flush=True)
    base = next((r for r in runs if r.get("senders") == 1 and "error" not in r), None)
    for run in runs:
        if base and base["sms_per_s"] and "error" not in run:
            run["speedup_vs_1"] = run["sms_per_s"] / base["sms_per_s"]
    return {
        "provider_latency_ms": opts.scale_latency_ms,
        "sender_concurrency": opts.sender_concurrency,
        "count": opts.scale_count,
        "start": opts.scale_start,
        "runs": runs,
    }


async def idle(cluster: Cluster, topology: str, opts: Options) -> Result:
    """No traffic for ``idle_seconds``: CPU per process; then single requests, each timed from
    its 202 to its arrival at the provider (the sandbox's ``date_created``)."""
    await start(cluster, topology)
    requests = Requests(cluster.api_url, cluster.api_key, "idle")
    # one request first: a process that has served before, now idle (not a cold start)
    async with (
        aiohttp.ClientSession() as session,
        session.post(requests.url, data=requests.body(0), headers=requests.headers) as response,
    ):
        await response.read()
    await wait_for_inbox(cluster.sandbox_url, 1, 10.0)
    await asyncio.sleep(2.0)  # part of the scenario: let that request's work settle first
    cpu0, each0, t0 = cluster.cpu(), cluster.cpu_per_process(), time.perf_counter()
    await asyncio.sleep(opts.idle_seconds)  # the measurement itself: nothing happens
    elapsed = time.perf_counter() - t0
    cpu = cpu_percent(cpu0, cluster.cpu(), elapsed)
    each1 = cluster.cpu_per_process()
    # target 6 is per process: pigeon run's API and its worker child each on their own
    each = {k: round((each1[k] - each0[k]) / elapsed * 100, 2) for k in each1 if k in each0}
    pickups = []
    async with aiohttp.ClientSession() as session:
        for seq in range(1, opts.idle_probes + 1):
            await asyncio.sleep(1.0)  # part of the scenario: idle again before each probe
            async with session.post(
                requests.url, data=requests.body(seq), headers=requests.headers
            ) as response:
                await response.read()
                answered = time.time()
            arrived = await wait_for_inbox(cluster.sandbox_url, seq + 1, 10.0)
            if arrived < seq + 1:  # the first request is in the inbox too
                raise TimeoutError(f"idle probe {seq} did not reach the provider within 10 s")
            got = await arrivals(cluster.sandbox_url, "idle")
            pickups.append(got.times[seq] - answered)
    return {
        "idle_seconds": opts.idle_seconds,
        "cpu_percent_of_one_core": cpu,
        "cpu_percent_per_process": each,
        "pickup_after_202_ms": summarize_ms(pickups),
    }


class HookReceiver:
    """A webhook receiver in the benchmark's own process: when each delivery arrived."""

    def __init__(self) -> None:
        #: (arrival time, the payload's data) per delivery
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            self.received.append((time.time(), orjson.loads(body)["data"]))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def webhook_latency(cluster: Cluster, topology: str, opts: Options) -> Result:
    """Status webhooks under an open-loop load: from each status change (the event's
    ``at``) to its arrival at a receiver, for every webhook of the measured sends."""
    await start(cluster, topology)
    receiver = HookReceiver()
    await receiver.start()
    try:
        auth = {"Authorization": f"Bearer {cluster.api_key}"}
        async with aiohttp.ClientSession() as http:
            made = await http.post(
                f"{cluster.api_url}/v1/webhook-endpoints", json={"url": receiver.url}, headers=auth
            )
            if made.status != 201:
                raise RuntimeError(f"creating the endpoint: {made.status} {await made.text()}")
        requests = Requests(cluster.api_url, cluster.api_key, "hook")

        async def run() -> Result:
            res = await open_loop(
                requests, rate=opts.webhook_rate, warmup=opts.warmup, duration=opts.duration
            )
            sent_at = time.time()
            accepted = len(res.accepted_at)
            # every accepted send ends with a 'delivered' webhook (the sandbox delivers all)
            deadline = time.monotonic() + opts.drain_timeout
            while time.monotonic() < deadline:
                done = sum(d["status"] == "delivered" for _, d in receiver.received)
                if done >= accepted:
                    break
                await asyncio.sleep(0.2)
            latencies = [
                arrived - datetime.fromisoformat(d["at"].replace("Z", "+00:00")).timestamp()
                for arrived, d in receiver.received
            ]
            by_status: dict[str, list[float]] = {}
            for (_, d), lat in zip(receiver.received, latencies, strict=True):
                by_status.setdefault(str(d["status"]), []).append(lat)
            return {
                "rate_per_s": opts.webhook_rate,
                "window_seconds": res.window_seconds,
                "accepted": accepted,
                "webhooks": len(latencies),
                "delivered_webhooks": len(by_status.get("delivered", [])),
                "drained_after_s": time.time() - sent_at,
                "latency": summarize_ms(latencies),
                "latency_by_status": {k: summarize_ms(v) for k, v in sorted(by_status.items())},
            }

        return await measured(cluster, run)
    finally:
        await receiver.stop()


def orjson_line(result: Result, limit: int = 300) -> str:
    """A short one-line view of a result, for the progress output."""
    shown = {k: v for k, v in result.items() if k not in {"processes", "preload"}}
    return orjson.dumps(shown).decode()[:limit]


SCENARIOS: dict[str, Callable[[Cluster, str, Options], Awaitable[Result]]] = {
    "accept_max": accept_throughput,
    "accept_batch": accept_batch,
    "accept_latency": accept_latency,
    "drain": drain,
    "drain_history": drain_history,
    "steady": steady,
    "idle": idle,
    "webhook_latency": webhook_latency,
}
#: scenarios that make their own clusters
OWN_CLUSTERS = ("scale_out",)
ALL_SCENARIOS = (*SCENARIOS, *OWN_CLUSTERS)


async def run_scenario(name: str, stack: str, topology: str, opts: Options, root: Path) -> Result:
    """Run one scenario on fresh processes and a fresh store and bus; always stop them."""
    if name == "scale_out":
        return await scale_out(stack, opts, root)
    cluster = Cluster(root / f"{stack}-{topology}-{name}", stack=stack)
    try:
        await cluster.prepare()
        result = await SCENARIOS[name](cluster, topology, opts)
        result["processes"] = {name: proc.pid for name, proc in cluster.procs.items()}
        return result
    finally:
        await asyncio.to_thread(cluster.stop)
