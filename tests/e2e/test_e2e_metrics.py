"""Metrics of real processes: ``pigeon run``'s one endpoint, a worker's own port,
and ``pigeon status`` reading them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import free_port
from pigeon.metrics.summary import Snapshot, snapshot
from tests.e2e.e2e_processes import (
    KAFKA_POSTGRES,
    STACKS,
    PigeonCluster,
    send_sms,
    statuses,
    wait_for,
)

COUNT = 3
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> tuple[Samples, Snapshot]:
    """Every sample at ``url`` by (name, labels), and the summary read from them."""
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    families = list(text_string_to_metric_families(response.text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return samples, snapshot(families)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def send_and_deliver(cluster: PigeonCluster, key: str, tag: str) -> None:
    """Send COUNT SMS and wait until each is delivered."""
    async with cluster.api_client(key) as api:
        answers = await asyncio.gather(
            *(send_sms(api, f"+1415777{i:04d}", f"{tag} {i}") for i in range(COUNT))
        )
        assert [a.status_code for a in answers] == [202] * COUNT
        ids = [str(a.json()["id"]) for a in answers]
        await wait_for(
            lambda: statuses(api, ids),
            lambda got: all(d["status"] == "delivered" for d in got.values()),
            within=60,
            what="delivered notifications",
        )


def all_caught_up(snap: Snapshot, groups: Iterable[str]) -> bool:
    """Every one of ``groups`` is measured and has read everything."""
    lag = snap.group_lag()
    return all(lag.get(group) == 0 for group in groups)


GROUPS = ("sms-sender", "usage-meter", "status-projector")


@pytest.mark.timeout(120)
async def test_pigeon_run_serves_one_endpoint_with_its_workers_metrics(
    cluster: PigeonCluster,
) -> None:
    """``pigeon run``'s /metrics sums every process: the API's requests, and the sender's
    and projector's counts from its workers' child; ``pigeon status`` reads it."""
    # Given pigeon run (API in the parent, workers in a forked child) and three delivered SMS
    run = cluster.run_all_in_one()
    await cluster.start(run)
    key = (cluster.data_dir / "dev-api-key").read_text().strip()
    await send_and_deliver(cluster, key, "run")

    # Then its one endpoint shows what the workers' child counted
    metrics_url = f"{cluster.api_url}/metrics"
    samples, snap = await wait_for(
        lambda: scrape(metrics_url),
        lambda got: all_caught_up(got[1], GROUPS),
        within=30,
        what="every group caught up",
    )
    assert value(samples, "pigeon_notifications_total", status="delivered") >= COUNT
    assert value(samples, "pigeon_notifications_total", status="accepted") >= COUNT
    assert (
        value(samples, "pigeon_provider_sends_total", provider="twilio", outcome="accepted")
        >= COUNT
    )
    assert (
        value(samples, "pigeon_consumer_messages_total", group="sms-sender", outcome="ack") >= COUNT
    )
    assert value(samples, "pigeon_provider_send_duration_seconds_count", provider="twilio") >= COUNT
    assert value(samples, "pigeon_store_commit_duration_seconds_count") > 0
    # and what the API process counted itself
    assert (
        value(
            samples,
            "pigeon_http_request_duration_seconds_count",
            route="/v1/notifications",
            status="202",
        )
        >= COUNT
    )
    assert snap.breakers == {"twilio": "closed"}
    assert snap.dead_letters_waiting == 0

    # And 'pigeon status' (default: this machine's API) prints one screen of it
    done = cluster.cli("status")
    assert done.returncode == 0, done.stderr
    screen = done.stdout
    assert metrics_url in screen
    for group in GROUPS:
        assert f"  {group}" in screen
    assert "Circuit breakers      twilio closed" in screen
    assert "Dead letters waiting  0" in screen
    assert "accepted " in screen and "Rates (last " in screen
    assert run.terminate() == 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stack", STACKS)
async def test_a_worker_serves_its_own_metrics_and_the_api_the_lag(
    cluster: PigeonCluster,
) -> None:
    """Split processes: ``pigeon worker`` with PIGEON_METRICS_PORT serves its own counts;
    ``pigeon api``'s /metrics has every group's lag (0 once delivered) and the backlog."""
    port = free_port()
    names = ["sms-sender", "usage-meter", "status-projector"]
    sandbox = cluster.sandbox()
    api = cluster.api()
    workers = cluster.spawn(
        "workers",
        "worker",
        *names,
        ready_line=f"worker {', '.join(names)} started",
        env={"PIGEON_METRICS_PORT": str(port)},
    )
    await cluster.start(sandbox, api, workers, *cluster.relays())
    key = cluster.create_api_key("acme")
    await send_and_deliver(cluster, key, "split")

    # Then the worker's port shows its own process: sends, deliveries, its CPU
    mine, _ = await scrape(f"http://127.0.0.1:{port}/metrics")
    assert (
        value(mine, "pigeon_provider_sends_total", provider="twilio", outcome="accepted") >= COUNT
    )
    assert value(mine, "pigeon_notifications_total", status="delivered") >= COUNT
    assert value(mine, "process_cpu_seconds_total") > 0
    assert value(mine, "pigeon_http_request_duration_seconds_count") == 0  # not the API's

    # And the API's endpoint has the deployment's lag and backlog
    _, snap = await wait_for(
        lambda: scrape(f"{cluster.api_url}/metrics"),
        lambda got: all_caught_up(got[1], GROUPS),
        within=60,
        what="every group caught up",
    )
    assert snap.dead_letters_waiting == 0
    if cluster.stack == KAFKA_POSTGRES:
        assert snap.outbox_rows == 0
        assert {item.topic for item in snap.lags} >= {"sms.requested", "notification.status"}

    # And 'pigeon status --json' reads the same
    done = cluster.cli("status", "--url", f"{cluster.api_url}/metrics", "--json")
    assert done.returncode == 0, done.stderr
    assert '"dead_letters_waiting":0' in done.stdout
    assert '"group":"sms-sender"' in done.stdout


def test_status_says_where_it_looked_when_nothing_answers(cluster: PigeonCluster) -> None:
    """Nothing listening: one error line naming the URL and the setting, exit 2."""
    url = f"http://127.0.0.1:{free_port()}/metrics"
    done = cluster.cli("status", "--url", url)
    assert done.returncode == 2
    assert done.stderr.startswith("pigeon: error: PIGEON_METRICS_URL: cannot read metrics from")
    assert url in done.stderr
    bad = cluster.cli("status", "--url", "ftp://nowhere")
    assert bad.returncode == 2
    assert "PIGEON_METRICS_URL" in bad.stderr and "not an http(s) URL" in bad.stderr
