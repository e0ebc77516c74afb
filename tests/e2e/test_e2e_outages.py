"""Outages after start-up on Kafka + PostgreSQL: readiness fails, and no 202 without a commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.e2e_processes import (
    KAFKA_POSTGRES,
    PigeonCluster,
    PigeonProcess,
    inbox,
    send_sms,
    statuses,
    wait_for,
)
from tests.e2e.tcp_proxy import TcpProxy
from tests.integration.kafka_broker import running_broker

PROBLEM_JSON = "application/problem+json"


def recipient(i: int) -> str:
    """A valid, distinct E.164 number."""
    return f"+1415203{i:04d}"


async def readiness(cluster: PigeonCluster) -> httpx.Response:
    """``GET /readyz``."""
    async with httpx.AsyncClient(base_url=cluster.api_url, trust_env=False, timeout=10) as c:
        return await c.get("/readyz")


async def all_delivered(api: httpx.AsyncClient, ids: list[str]) -> None:
    """Wait until every one of ``ids`` is delivered."""
    await wait_for(
        lambda: statuses(api, ids),
        lambda got: all(d["status"] == "delivered" for d in got.values()),
        within=60,
        what="all delivered",
    )


def workers(cluster: PigeonCluster) -> list[PigeonProcess]:
    """A relay and one of each worker (not started)."""
    return [
        *cluster.relays(),
        cluster.worker("usage-meter"),
        cluster.worker("status-projector"),
        cluster.worker("sms-sender"),
    ]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stack", [KAFKA_POSTGRES])
async def test_a_broker_outage_fails_readiness_but_accepted_sms_wait_in_the_outbox(
    cluster: PigeonCluster,
) -> None:
    """Broker down: /readyz 503 but POST 202, the row durable in PostgreSQL; back: delivered."""
    # Given a running Pigeon that delivers
    key = await asyncio.to_thread(cluster.create_api_key, "e2e")
    api_process = cluster.api()
    first_workers = workers(cluster)
    await cluster.start(cluster.sandbox(), api_process, *first_workers)
    broker = cluster.broker
    assert broker is not None
    with contextlib.ExitStack() as later:
        async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:
            before = [await send_sms(api, recipient(i), f"Before {i}") for i in range(3)]
            await all_delivered(api, [str(r.json()["id"]) for r in before])
            assert (await readiness(cluster)).status_code == 200

            # When the broker stops
            broker.stop()

            # Then readiness fails with a problem naming Kafka
            down = await wait_for(
                lambda: readiness(cluster),
                lambda r: r.status_code == 503,
                within=30,
                what="/readyz 503",
            )
            assert down.headers["content-type"] == PROBLEM_JSON
            assert "Kafka" in down.json()["detail"]

            # But SMS are still accepted, each one committed to the outbox first
            during = [
                await send_sms(api, recipient(i), f"During the outage {i}") for i in range(3, 8)
            ]
            assert [r.status_code for r in during] == [202] * 5
            ids = [str(r.json()["id"]) for r in during]
            stored = cluster.sql("SELECT convert_from(value, 'UTF8') FROM outbox")
            for notification_id in ids:
                assert any(notification_id in value for (value,) in stored), notification_id

            # When a broker answers on the same address again
            # (Tansu keeps nothing: the new one has no topics, groups or offsets, which
            # real Kafka would keep; so the relay and workers start afresh on it, while
            # the API process stays up throughout)
            for process in first_workers:
                process.kill9()
            later.enter_context(running_broker(port=broker.port))
            await cluster.start(*workers(cluster))

            # Then readiness recovers and the SMS accepted during the outage are delivered
            await wait_for(
                lambda: readiness(cluster),
                lambda r: r.status_code == 200,
                within=60,
                what="/readyz 200 again",
            )
            await all_delivered(api, ids)
            received = Counter(str(m["to"]) for m in await inbox(sandbox))
            assert received == Counter(recipient(i) for i in range(8))
            assert cluster.sql("SELECT count(*) FROM outbox") == [(0,)]
    assert api_process.running


def _via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by ``127.0.0.1:port``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", [KAFKA_POSTGRES])
async def test_a_database_outage_fails_readiness_and_writes_answer_503_never_202(
    cluster: PigeonCluster,
) -> None:
    """PostgreSQL unreachable: /readyz 503 and POST 503 problem+json; restored: 202 again."""
    # Given the API reaching PostgreSQL through a link we can cut
    assert cluster.database_url is not None
    target = urlsplit(cluster.database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        # (the key commands run in threads: the proxy lives on this event loop)
        key = await asyncio.to_thread(cluster.create_api_key, "e2e")
        fresh_key = await asyncio.to_thread(cluster.create_api_key, "e2e-other")
        api_process = cluster.spawn(
            "api",
            "api",
            ready_url=f"{cluster.api_url}/healthz",
            env={"PIGEON_DATABASE_URL": _via(cluster.database_url, proxy.port)},
        )
        await cluster.start(api_process)
        async with cluster.api_client(key) as api:
            accepted = await send_sms(api, recipient(0), "Before the outage")
            assert accepted.status_code == 202, accepted.text
            assert (await readiness(cluster)).status_code == 200

            # When the link to the database is cut
            await proxy.cut()

            # Then readiness fails, naming the database
            down = await wait_for(
                lambda: readiness(cluster),
                lambda r: r.status_code == 503,
                within=30,
                what="/readyz 503",
            )
            assert down.headers["content-type"] == PROBLEM_JSON
            assert "database" in down.json()["detail"]

            # And every write is refused with 503 problem+json, never acknowledged
            refused = [await send_sms(api, recipient(i), f"Lost {i}") for i in range(1, 6)]
            other = cluster.api_client(fresh_key)  # a key this API has not seen yet
            async with other:
                refused.append(await send_sms(other, recipient(6), "Lost too"))
            for response in refused:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == PROBLEM_JSON
                assert response.json()["status"] == 503

            # When the link is restored
            await proxy.start()

            # Then writes succeed again, and the notification from before is there
            again = await wait_for(
                lambda: send_sms(api, recipient(7), "After the outage"),
                lambda r: r.status_code == 202,
                within=30,
                what="POST 202 again",
            )
            assert again.status_code == 202
            assert (await readiness(cluster)).status_code == 200
            before = await api.get(accepted.headers["location"])
            assert before.status_code == 200
        [(stored,)] = await asyncio.to_thread(
            cluster.sql, "SELECT count(*) FROM notifications WHERE body LIKE %s", "Lost%"
        )
        assert stored == 0
        assert api_process.running
    finally:
        await proxy.cut()
