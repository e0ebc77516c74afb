"""A worker stopped with SIGTERM finishes what it holds; another takes over its share."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.e2e_processes import (
    STACKS,
    PigeonCluster,
    in_background,
    inbox,
    send_sms,
    statuses,
    wait_for,
)

COUNT = 200


def recipient(i: int) -> str:
    """A valid, distinct E.164 number."""
    return f"+1415200{i:04d}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", STACKS)
async def test_a_worker_stopped_with_sigterm_finishes_cleanly_and_another_resumes(
    cluster: PigeonCluster,
) -> None:
    """A sender stopped with SIGTERM mid-run exits 0; the other sender sends the rest, once."""
    # Given two senders sharing the work, and a provider taking 50 ms per send
    key = cluster.create_api_key("e2e")
    leaving, staying = cluster.worker("sms-sender"), cluster.worker("sms-sender")
    await cluster.start(
        cluster.sandbox(),
        cluster.api(),
        *cluster.relays(),
        cluster.worker("usage-meter"),
        cluster.worker("status-projector"),
        leaving,
        staying,
    )
    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:
        faults = await sandbox.put("/sandbox/faults", json={"latency_ms": 50})
        assert faults.status_code == 200, faults.text

        # When 200 SMS are sent and one sender gets SIGTERM once some are out
        slots = asyncio.Semaphore(16)

        async def send(i: int) -> str:
            async with slots:
                response = await send_sms(api, recipient(i), f"Graceful stop message {i}")
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        async with in_background(asyncio.gather(*(send(i) for i in range(COUNT)))) as sending:
            await wait_for(
                lambda: inbox(sandbox),
                lambda got: len(got) > 30,
                within=20,
                what="more than 30 SMS in the inbox",
                interval=0.02,
            )
            exit_code = await asyncio.to_thread(leaving.terminate)
            ids = await sending

        # Then it exits cleanly
        assert exit_code == 0, leaving.logs()
        assert "Traceback" not in leaving.stderr(), leaving.logs()

        # And the other sender delivers everything, each SMS exactly once
        await wait_for(
            lambda: statuses(api, ids),
            lambda got: all(d["status"] == "delivered" for d in got.values()),
            within=60,
            what="all delivered",
        )
        received = await inbox(sandbox)
        assert Counter(m["to"] for m in received) == Counter(recipient(i) for i in range(COUNT))
        assert staying.running
