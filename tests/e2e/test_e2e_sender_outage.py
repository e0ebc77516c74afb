"""SMS accepted while the sender is down wait on the bus and go out once it is back."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.e2e_processes import (
    STACKS,
    PigeonCluster,
    inbox,
    send_sms,
    statuses,
    usage_today,
    wait_for,
)

COUNT = 100
LONG_EVERY = 10  # every tenth message is 200 GSM-7 characters: two segments
FULL_TIMELINE = ["accepted", "queued", "sending", "sent", "delivered"]


def recipient(i: int) -> str:
    """A valid, distinct E.164 number (US 555 numbers pass libphonenumber's checks)."""
    return f"+1415555{i:04d}"


def body(i: int) -> str:
    """A one-segment text, or a two-segment one for every tenth message."""
    text = f"Outage test message {i}"
    return text.ljust(200, ".") if i % LONG_EVERY == 0 else text


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", STACKS)
async def test_100_sms_sent_while_the_sender_is_down_are_all_delivered_exactly_once_when_it_returns(
    cluster: PigeonCluster,
) -> None:
    """SMS accepted with no sender running are each delivered once when it starts."""
    # Given the API, the sandbox, the usage meter and the status projector, but no sender
    key = cluster.create_api_key("e2e")
    await cluster.start(
        cluster.sandbox(),
        cluster.api(),
        *cluster.relays(),
        cluster.worker("usage-meter"),
        cluster.worker("status-projector"),
    )
    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:
        # When 100 SMS are sent
        slots = asyncio.Semaphore(16)

        async def send(i: int) -> str:
            async with slots:
                response = await send_sms(api, recipient(i), body(i))
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        ids = await asyncio.gather(*(send(i) for i in range(COUNT)))
        assert len(set(ids)) == COUNT

        # Then they are metered and queued, but nothing reaches the provider
        expected_segments = COUNT + COUNT // LONG_EVERY
        await wait_for(
            lambda: usage_today(api),
            lambda u: u == (COUNT, expected_segments),
            within=30,
            what="usage of the accepted SMS",
        )
        # (the status projector is another consumer group: it may lag the meter)
        await wait_for(
            lambda: statuses(api, ids),
            lambda got: {d["status"] for d in got.values()} == {"queued"},
            within=30,
            what="every notification queued",
        )
        assert await inbox(sandbox) == []

        # When the sender starts
        await cluster.start(cluster.worker("sms-sender"))

        # Then every recipient gets its message exactly once, with the right body
        await wait_for(
            lambda: inbox(sandbox),
            lambda got: len(got) > 0,
            within=20,
            what="a first SMS in the inbox",
        )
        await wait_for(
            lambda: inbox(sandbox),
            lambda got: len(got) >= COUNT,
            within=60,
            what="all SMS in the sandbox inbox",
        )

        # And every notification ends delivered, through each step of its life
        async def undelivered() -> list[str]:
            details = await statuses(api, ids)
            return [i for i, d in details.items() if d["status"] != "delivered"]

        await wait_for(undelivered, lambda left: not left, within=60, what="all delivered")

        # Checked after the callbacks settled, so a late duplicate would be seen too
        received = await inbox(sandbox)
        per_recipient = Counter(str(m["to"]) for m in received)
        assert per_recipient == Counter(recipient(i) for i in range(COUNT))
        bodies = {str(m["to"]): m["body"] for m in received}
        assert bodies == {recipient(i): body(i) for i in range(COUNT)}
        assert await usage_today(api) == (COUNT, expected_segments)

        details = await statuses(api, ids)
        for i, notification_id in enumerate(ids):
            detail = details[notification_id]
            assert detail["to"] == recipient(i)
            assert [step["status"] for step in detail["timeline"]] == FULL_TIMELINE, detail
            assert detail["provider_message_id"] is not None
            assert detail["attempts"] == 1
