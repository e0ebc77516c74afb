"""pigeon.client against a real ``pigeon run`` on each stack, as a Python team would use it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from pigeon.client import AsyncClient, Client, NotFound, Unauthorized, Unprocessable
from pigeon.domain.status import NotificationStatus
from tests.e2e.e2e_processes import STACKS, PigeonCluster, wait_for


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", STACKS)
async def test_the_python_client_sends_waits_lists_and_raises_typed_errors(
    cluster: PigeonCluster,
) -> None:
    _process, key = await cluster.run_with_dev_key()

    async with AsyncClient(cluster.api_url, key, trust_env=False) as pigeon:
        # a send, then its final state, with the provider's id and the whole timeline
        accepted = await pigeon.send_sms(
            "+14155550100", "From the async client", metadata={"order": "A-7"}
        )
        assert accepted.status == "accepted" and accepted.segments == 1
        final = await pigeon.wait(accepted.id, within=60, interval=0.1)
        assert final.status is NotificationStatus.DELIVERED
        assert final.provider_message_id
        assert [step.status for step in final.timeline][-1] is NotificationStatus.DELIVERED

        # a batch: one result per item, the bad one refused alone
        batch = await pigeon.send_batch(
            [
                {
                    "channel": "sms",
                    "to": "+14155550101",
                    "body": "one",
                    "metadata": {"order": "A-7"},
                },
                {"channel": "sms", "to": "not a number", "body": "two"},
            ]
        )
        assert (batch.accepted, batch.refused) == (1, 1)
        assert batch.results[1].problem is not None
        assert batch.results[1].problem.errors == [
            {"field": "to", "reason": batch.results[1].problem.errors[0]["reason"]}
        ]
        batched = batch.results[0].notification
        assert batched is not None

        # listing by metadata, page after page (page size 1: the cursor is followed)
        found = [n.id async for n in pigeon.iterate(metadata={"order": "A-7"}, page_size=1)]
        assert found == [batched.id, accepted.id]  # newest first

        # typed errors from the problem details
        with pytest.raises(Unprocessable) as invalid:
            await pigeon.send_sms("+1 nope", "hi")
        assert [e["field"] for e in invalid.value.errors] == ["to"]
        with pytest.raises(NotFound):
            await pigeon.get("ntf_does_not_exist")

    # the blocking client, as a script or a Django view would use it
    def blocking() -> NotificationStatus:
        with Client(cluster.api_url, key, trust_env=False) as pigeon:
            sent = pigeon.send_sms("+14155550102", "From the blocking client")
            return pigeon.wait(sent.id, within=60, interval=0.1).status

    assert await asyncio.to_thread(blocking) is NotificationStatus.DELIVERED

    def metered() -> int:
        today = datetime.now(UTC).date()
        with Client(cluster.api_url, key, trust_env=False) as pigeon:
            return sum(day.messages for day in pigeon.usage(today, today))

    # three SMS were accepted (two single sends, one batch item): each metered once
    await wait_for(
        lambda: asyncio.to_thread(metered), lambda n: n == 3, within=30, what="3 metered SMS"
    )

    def unknown_key() -> None:
        with Client(cluster.api_url, "pk_not_a_key", trust_env=False) as stranger:
            stranger.get(accepted.id)

    with pytest.raises(Unauthorized):
        await asyncio.to_thread(unknown_key)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", STACKS)
async def test_the_async_client_streams_statuses_and_reads_the_quota(
    cluster: PigeonCluster,
) -> None:
    _process, key = await cluster.run_with_dev_key()
    async with AsyncClient(cluster.api_url, key, trust_env=False) as pigeon:
        seen: list[tuple[str, str | None]] = []
        delivered = asyncio.Event()
        opened = asyncio.Event()

        async def watch(notification_id: list[str]) -> None:
            async for event in pigeon.stream(positions=True):
                opened.set()
                if event.kind != "status":
                    continue
                seen.append((event.data["notification_id"], event.data["status"]))
                if notification_id and (notification_id[0], "delivered") in seen:
                    delivered.set()
                    return

        wanted: list[str] = []
        watcher = asyncio.ensure_future(watch(wanted))
        try:
            await asyncio.wait_for(opened.wait(), 30)  # its opening position came
            accepted = await pigeon.send_sms("+14155550177", "streamed")
            wanted.append(accepted.id)
            await asyncio.wait_for(delivered.wait(), 60)
        finally:
            watcher.cancel()
        mine = [status for nid, status in seen if nid == accepted.id]
        assert mine[0] == "queued" and mine[-1] == "delivered", mine

        quota = await pigeon.quota()
        assert quota["rate_limit"] is None and quota["monthly_segments"]["quota"] is None
        assert quota["monthly_segments"]["resets_at"].endswith("T00:00:00Z")
