"""Kafka + PostgreSQL scaled out: several processes of each worker, one sender killed -9.

(Several projector and meter instances on either dialect: tests/integration/store.)
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.e2e_processes import (
    KAFKA_POSTGRES,
    PigeonCluster,
    in_background,
    inbox,
    send_sms,
    statuses,
    usage_today,
    wait_for,
)

COUNT = 300
KILL_AFTER = 40  # messages in the inbox before the kill
LONG_EVERY = 10  # every tenth message has two segments


def recipient(i: int) -> str:
    """A valid, distinct E.164 number."""
    return f"+3361200{i:04d}"


def body(i: int) -> str:
    """A one-segment text, or a two-segment one for every tenth message."""
    text = f"Scale-out message {i}"
    return text.ljust(200, ".") if i % LONG_EVERY == 0 else text


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stack", [KAFKA_POSTGRES])
async def test_three_senders_one_killed_deliver_everything_exactly_once_with_exact_counts(
    cluster: PigeonCluster,
) -> None:
    """3 senders (one kill -9), 2 usage meters, 2 status projectors: once each, exact usage."""
    # Given three senders, two usage meters and two status projectors on Kafka + PostgreSQL
    key = cluster.create_api_key("e2e")
    senders = [cluster.worker("sms-sender") for _ in range(3)]
    await cluster.start(
        cluster.sandbox(),
        cluster.api(),
        *cluster.relays(),
        cluster.worker("usage-meter"),
        cluster.worker("usage-meter"),
        cluster.worker("status-projector"),
        cluster.worker("status-projector"),
        *senders,
    )
    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:
        faults = await sandbox.put("/sandbox/faults", json={"latency_ms": 20})
        assert faults.status_code == 200, faults.text

        # When 300 SMS are sent
        slots = asyncio.Semaphore(16)

        async def send(i: int) -> str:
            async with slots:
                response = await send_sms(api, recipient(i), body(i))
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        async with in_background(asyncio.gather(*(send(i) for i in range(COUNT)))) as sending:
            # And one sender is killed with SIGKILL once some have gone out
            await wait_for(
                lambda: inbox(sandbox),
                lambda got: len(got) > KILL_AFTER,
                within=60,
                what=f"more than {KILL_AFTER} SMS in the inbox",
                interval=0.02,
            )
            assert senders[0].kill9() == -9
            ids = await sending
        assert len(set(ids)) == COUNT
        assert len(await inbox(sandbox)) < COUNT, "the kill came too late to test anything"

        # Then every notification ends delivered
        async def undelivered() -> list[str]:
            details = await statuses(api, ids)
            return [i for i, d in details.items() if d["status"] != "delivered"]

        await wait_for(undelivered, lambda left: not left, within=90, what="all delivered")

        # And every recipient got its message exactly once, with its body
        received = await inbox(sandbox)
        assert Counter(str(m["to"]) for m in received) == Counter(
            recipient(i) for i in range(COUNT)
        )
        assert {str(m["to"]): m["body"] for m in received} == {
            recipient(i): body(i) for i in range(COUNT)
        }

        # And the two usage meters counted each SMS once
        expected_usage = (COUNT, COUNT + COUNT // LONG_EVERY)
        assert await usage_today(api) == expected_usage

        # And the two status projectors recorded each step once, in order
        details = await statuses(api, ids)
        by_sid = {str(m["sid"]) for m in received}
        for i, notification_id in enumerate(ids):
            detail = details[notification_id]
            assert detail["to"] == recipient(i)
            steps = [step["status"] for step in detail["timeline"]]
            # a redelivered request may start a second attempt ("sending" twice)
            assert [s for s in steps if s != "sending"] == [
                "accepted",
                "queued",
                "sent",
                "delivered",
            ], detail
            assert "sending" in steps
            assert detail["provider_message_id"] in by_sid

    # And the survivors stop cleanly
    for process in senders[1:]:
        assert process.running
