"""The outbox relay as a process: killed -9 mid-backlog it loses nothing; two relays, one active.

What reached Kafka is read with a plain aiokafka consumer; what reached the
recipients, in the sandbox's inbox.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

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
from tests.integration.kafka_reader import read_topic

RECIPIENTS = 40
#: 4,000 notifications: four relay batches (1,000 rows each), so that after the first the
#: relay is still publishing when it is killed (with two, the second's 200 rows were
#: sometimes on the topic before the kill under the full suite's load)
PER_RECIPIENT = 100
COUNT = RECIPIENTS * PER_RECIPIENT


def recipient(r: int) -> str:
    """A valid, distinct E.164 number."""
    return f"+1415202{r:04d}"


def delivered_count(cluster: PigeonCluster) -> int:
    """Notifications the status projector has marked delivered."""
    [(count,)] = cluster.sql("SELECT count(*) FROM notifications WHERE status = 'delivered'")
    return int(count)


def outbox_rows(cluster: PigeonCluster) -> int:
    """Events still waiting in the outbox."""
    [(count,)] = cluster.sql("SELECT count(*) FROM outbox")
    return int(count)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stack", [KAFKA_POSTGRES])
async def test_a_relay_killed_mid_backlog_loses_nothing_and_keeps_per_recipient_order(
    cluster: PigeonCluster,
) -> None:
    """A relay killed -9 while publishing a backlog: the next one publishes the rest, in order."""
    # Given every worker but no relay, and 4,000 notifications accepted meanwhile: 100 for
    # each of 40 recipients, each recipient's sent one after the other
    key = cluster.create_api_key("e2e")
    await cluster.start(
        cluster.sandbox(),
        cluster.api(),
        cluster.worker("usage-meter"),
        cluster.worker("status-projector"),
        cluster.worker("sms-sender"),
    )
    assert cluster.broker is not None
    servers = cluster.broker.bootstrap_servers
    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:

        async def send_all(r: int) -> list[str]:
            ids = []
            for n in range(PER_RECIPIENT):
                response = await send_sms(api, recipient(r), f"Backlog {r}/{n}")
                assert response.status_code == 202, response.text
                ids.append(str(response.json()["id"]))
            return ids

        accepted = dict(
            zip(
                (recipient(r) for r in range(RECIPIENTS)),
                await asyncio.gather(*(send_all(r) for r in range(RECIPIENTS))),
                strict=True,
            )
        )
        assert outbox_rows(cluster) == COUNT

        # When a relay starts and is killed -9 as soon as its first batch is on the topic:
        # the outbox shrinks when Kafka acknowledged it, which the database shows at once
        # (a topic reader sees it only after the broker's fetch wait, by when the relay
        # may have published the rest too)
        relay = cluster.worker("outbox-relay")
        await wait_for(
            lambda: asyncio.to_thread(outbox_rows, cluster),
            lambda left: left < COUNT,
            within=60,
            what="the relay's first batch",
            interval=0.002,
        )
        assert relay.kill9() == -9
        assert await read_topic(servers, "sms.requested", lambda got: len(got) > 0, within=60)
        left_at_kill = outbox_rows(cluster)
        assert left_at_kill > 0, "the relay finished before the kill: nothing tested"

        # And a new relay is started
        await cluster.start(cluster.worker("outbox-relay"))

        # Then every notification is delivered, each SMS sent exactly once
        await wait_for(
            lambda: asyncio.to_thread(delivered_count, cluster),
            lambda n: n == COUNT,
            within=120,
            what="every notification delivered",
            interval=0.5,
        )
        received = await inbox(sandbox)
        assert Counter(str(m["to"]) for m in received) == Counter(
            {to: PER_RECIPIENT for to in accepted}
        )
        assert outbox_rows(cluster) == 0

        # And on the topic every request is there, per recipient in accept order
        # (a record published again after the kill may repeat an earlier one)
        everything = {nid for ids in accepted.values() for nid in ids}

        def requested_ids(records: Any) -> list[tuple[str, str]]:
            return [(r.key.decode(), json.loads(r.value)["notification_id"]) for r in records]

        records = await read_topic(
            servers,
            "sms.requested",
            lambda got: {nid for _, nid in requested_ids(got)} >= everything,
            within=60,
        )
        on_topic: dict[str, list[str]] = {}
        for to, nid in requested_ids(records):
            on_topic.setdefault(to, []).append(nid)
        for to, ids in accepted.items():
            first_seen = list(dict.fromkeys(on_topic[to]))
            assert first_seen == ids, f"{to}: requests out of accept order"
        duplicates = len(records) - COUNT
        print(
            f"\nrelay kill -9: {COUNT - left_at_kill} of {COUNT} rows deleted before the kill, "
            f"{duplicates} record(s) published twice"
        )
        details = await statuses(api, accepted[recipient(0)])
        assert {d["status"] for d in details.values()} == {"delivered"}


def _active(relay: PigeonProcess) -> bool:
    return "outbox relay: active" in relay.stderr()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", [KAFKA_POSTGRES])
async def test_of_two_relays_one_is_active_and_the_other_takes_over_when_it_is_killed(
    cluster: PigeonCluster,
) -> None:
    """Two relay processes: exactly one publishes; kill -9 it and the standby takes over."""
    # Given two relays and every worker
    key = cluster.create_api_key("e2e")
    relays = [cluster.worker("outbox-relay"), cluster.worker("outbox-relay")]
    await cluster.start(
        cluster.sandbox(),
        cluster.api(),
        *relays,
        cluster.worker("usage-meter"),
        cluster.worker("status-projector"),
        cluster.worker("sms-sender"),
    )
    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:

        async def send_batch(first: int, count: int) -> list[str]:
            responses = await asyncio.gather(
                *(send_sms(api, recipient(i), f"Relay test {i}") for i in range(first, count))
            )
            assert {r.status_code for r in responses} == {202}
            return [str(r.json()["id"]) for r in responses]

        async def all_delivered(ids: list[str]) -> None:
            await wait_for(
                lambda: statuses(api, ids),
                lambda got: all(d["status"] == "delivered" for d in got.values()),
                within=60,
                what="all delivered",
            )

        # Then exactly one is active, and notifications are delivered through it
        await wait_for(
            lambda: asyncio.sleep(0, [r for r in relays if _active(r)]),
            lambda active: len(active) >= 1,
            within=30,
            what="an active relay",
        )
        await all_delivered(await send_batch(0, 10))
        [active] = [r for r in relays if _active(r)]
        [standby] = [r for r in relays if r is not active]

        # When the active relay is killed -9
        assert active.kill9() == -9

        # Then the standby becomes active and delivers what is accepted next
        await wait_for(
            lambda: asyncio.sleep(0, _active(standby)),
            lambda yes: yes,
            within=30,
            what="the standby relay active",
        )
        await all_delivered(await send_batch(10, 20))
        assert Counter(str(m["to"]) for m in await inbox(sandbox)) == Counter(
            recipient(i) for i in range(20)
        )
