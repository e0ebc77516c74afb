"""Status webhooks from a real ``pigeon run`` on each stack to the sandbox's receiver.

Every status of a notification arrives in order, signed so that the
``standardwebhooks`` package verifies it; a failing receiver gets retries and
the delivery log shows them; a replay sends again; an endpoint failing for too
long is disabled with its reason; ``kill -9`` mid-way loses no webhook.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook

from pigeon.sandbox import SandboxServer
from tests.e2e.e2e_processes import STACKS, PigeonCluster, send_sms, wait_for

pytestmark = [pytest.mark.parametrize("stack", STACKS), pytest.mark.timeout(180)]

ENDPOINTS = "/v1/webhook-endpoints"
TO = "+14155550123"
SUCCESS = ["SmsSending", "SmsSent", "SmsDelivered"]


def _dev_key(cluster: PigeonCluster) -> str:
    return (cluster.data_dir / "dev-api-key").read_text().strip()


async def _endpoint(api: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    answer = await api.post(ENDPOINTS, json={"url": url, **extra})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def _received(sandbox: httpx.AsyncClient, name: str) -> list[dict[str, Any]]:
    """What the receiver ``name`` got, oldest first, each with its parsed ``payload``."""
    answer = await sandbox.get(f"/sandbox/webhooks/{name}")
    answer.raise_for_status()
    requests: list[dict[str, Any]] = answer.json()["requests"]
    for request in requests:
        request["payload"] = orjson.loads(request["body"])
    return requests


def _types_of(requests: Sequence[dict[str, Any]], notification_id: str) -> list[str]:
    """The event types the receiver accepted (answered 2xx) for one notification, in order."""
    return [
        r["payload"]["data"]["type"]
        for r in requests
        if r["payload"]["data"]["notification_id"] == notification_id and r["answered"] < 300
    ]


async def _send(api: httpx.AsyncClient, body: str = "Your code is 123456") -> str:
    answer = await send_sms(api, TO, body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def test_every_status_arrives_in_order_signed_so_standardwebhooks_verifies_it(
    cluster: PigeonCluster,
) -> None:
    """sending, sent, delivered, each verified; a filtered endpoint gets only what it asked."""
    await cluster.start(cluster.run_all_in_one())
    async with cluster.api_client(_dev_key(cluster)) as api, cluster.sandbox_client() as sandbox:
        every = await _endpoint(api, f"{cluster.sandbox_url}/sandbox/webhooks/all")
        final = await _endpoint(
            api, f"{cluster.sandbox_url}/sandbox/webhooks/final", event_types=["SmsDelivered"]
        )
        notification_id = await _send(api)

        got = await wait_for(
            lambda: _received(sandbox, "all"),
            lambda got: "SmsDelivered" in _types_of(got, notification_id),
            within=60,
            what="the delivered webhook",
        )
        assert _types_of(got, notification_id) == SUCCESS
        assert [r["payload"]["data"]["status"] for r in got] == ["sending", "sent", "delivered"]
        for request in got:
            verified = Webhook(every["secret"]).verify(request["body"], request["headers"])
            assert verified["type"] == "notification.status"
            assert request["headers"]["webhook-id"].startswith("msg_")
            assert TO not in request["body"] and "123456" not in request["body"]
        assert len({r["headers"]["webhook-id"] for r in got}) == 3
        step = got[-1]["payload"]["data"]["step"]
        assert step["status"] == "delivered" and step["at"] == got[-1]["payload"]["data"]["at"]

        only_final = await wait_for(
            lambda: _received(sandbox, "final"),
            lambda got: len(got) >= 1,
            within=30,
            what="the filtered endpoint's webhook",
        )
        assert _types_of(only_final, notification_id) == ["SmsDelivered"]
        assert Webhook(final["secret"]).verify(only_final[0]["body"], only_final[0]["headers"])

        log = await api.get(f"{ENDPOINTS}/{every['id']}/deliveries")
        assert [(d["event_type"], d["state"], d["attempts"]) for d in log.json()] == [
            ("SmsDelivered", "delivered", 1),
            ("SmsSent", "delivered", 1),
            ("SmsSending", "delivered", 1),
        ]


async def test_a_failing_receiver_gets_retries_in_order_and_a_replay_sends_again(
    cluster: PigeonCluster,
) -> None:
    """Two 503s, then delivered under the same webhook-id; the later statuses wait for it."""
    cluster.env["PIGEON_WEBHOOK_RETRY_BASE_SECONDS"] = "0.2"
    await cluster.start(cluster.run_all_in_one())
    started = datetime.now(UTC)
    async with cluster.api_client(_dev_key(cluster)) as api, cluster.sandbox_client() as sandbox:
        faults = await sandbox.put(
            "/sandbox/webhooks/flaky/faults", json={"fail_next": 2, "status": 503}
        )
        assert faults.status_code == 200, faults.text
        endpoint = await _endpoint(api, f"{cluster.sandbox_url}/sandbox/webhooks/flaky")
        notification_id = await _send(api)

        got = await wait_for(
            lambda: _received(sandbox, "flaky"),
            lambda got: "SmsDelivered" in _types_of(got, notification_id),
            within=60,
            what="the delivered webhook after the failures",
        )
        assert [(r["payload"]["data"]["type"], r["answered"]) for r in got] == [
            ("SmsSending", 503),
            ("SmsSending", 503),
            ("SmsSending", 204),
            ("SmsSent", 204),
            ("SmsDelivered", 204),
        ]
        assert len({r["headers"]["webhook-id"] for r in got[:3]}) == 1
        for request in got:  # each attempt is signed for its own timestamp
            Webhook(endpoint["secret"]).verify(request["body"], request["headers"])
        log = (await api.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries")).json()
        first = log[-1]
        assert (first["event_type"], first["attempts"], first["state"]) == (
            "SmsSending",
            3,
            "delivered",
        )
        assert first["last_error"].startswith("HTTP 503")
        assert first["last_status_code"] == 204

        replay = await api.post(
            f"{ENDPOINTS}/{endpoint['id']}/replay", params={"since": started.isoformat()}
        )
        assert replay.status_code == 202 and replay.json() == {"requeued": 3}
        again = await wait_for(
            lambda: _received(sandbox, "flaky"),
            lambda got: len(got) == 8,
            within=30,
            what="the three replayed webhooks",
        )
        assert [r["payload"]["data"]["type"] for r in again[5:]] == SUCCESS
        assert [r["headers"]["webhook-id"] for r in again[5:]] == [
            r["headers"]["webhook-id"] for r in got[2:]
        ]


async def test_an_endpoint_failing_past_the_limit_is_disabled_with_its_reason(
    cluster: PigeonCluster,
) -> None:
    """PIGEON_WEBHOOK_DISABLE_AFTER_HOURS tiny: a receiver that keeps failing is disabled;
    enabled again, its waiting deliveries go."""
    cluster.env.update(
        {
            "PIGEON_WEBHOOK_DISABLE_AFTER_HOURS": "0.0001",  # 0.36 s
            "PIGEON_WEBHOOK_RETRY_BASE_SECONDS": "0.1",
            "PIGEON_BREAKER_RESET_SECONDS": "0.5",
            "PIGEON_WEBHOOK_MAX_ATTEMPTS": "1000",  # its deliveries wait, not fail, meanwhile
        }
    )
    await cluster.start(cluster.run_all_in_one())
    async with cluster.api_client(_dev_key(cluster)) as api, cluster.sandbox_client() as sandbox:
        await sandbox.put("/sandbox/webhooks/down/faults", json={"fail_next": 1_000_000})
        endpoint = await _endpoint(api, f"{cluster.sandbox_url}/sandbox/webhooks/down")
        notification_id = await _send(api)

        shown = await wait_for(
            lambda: _get(api, f"{ENDPOINTS}/{endpoint['id']}"),
            lambda shown: not shown["enabled"],
            within=60,
            what="the endpoint disabled",
        )
        assert "every attempt failed since" in shown["disabled_reason"]
        assert "HTTP 500" in shown["disabled_reason"]
        assert all(r["answered"] == 500 for r in await _received(sandbox, "down"))

        await sandbox.put("/sandbox/webhooks/down/faults", json={"fail_next": 0})
        enabled = await api.post(f"{ENDPOINTS}/{endpoint['id']}/enable")
        assert enabled.json()["enabled"] is True
        got = await wait_for(
            lambda: _received(sandbox, "down"),
            lambda got: "SmsDelivered" in _types_of(got, notification_id),
            within=60,
            what="the waiting webhooks after enabling",
        )
        assert _types_of(got, notification_id) == SUCCESS


async def _get(api: httpx.AsyncClient, path: str) -> dict[str, Any]:
    answer = await api.get(path)
    answer.raise_for_status()
    shown: dict[str, Any] = answer.json()
    return shown


async def test_kill_9_of_pigeon_run_mid_way_loses_no_webhook(cluster: PigeonCluster) -> None:
    """Every status a notification went through reaches the receiver, across a kill -9."""
    cluster.env["PIGEON_WEBHOOK_TIMEOUT_SECONDS"] = "1"  # what was in flight: due again soon
    async with SandboxServer(account_sid="AC" + "0" * 32, auth_token="receiver") as receiver:
        run = cluster.run_all_in_one()
        await cluster.start(run)
        key = _dev_key(cluster)
        async with (
            cluster.api_client(key) as api,
            httpx.AsyncClient(base_url=receiver.url, trust_env=False) as sandbox,
        ):
            await _endpoint(api, f"{receiver.url}/sandbox/webhooks/orders")
            ids = [await _send(api, f"message {i}") for i in range(20)]
            await wait_for(
                lambda: _received(sandbox, "orders"),
                lambda got: len(got) >= 3,
                within=60,
                what="the first webhooks",
                interval=0.02,
            )
            assert run.kill9() == -9
            await asyncio.sleep(1.0)  # part of the scenario: the dead process's lease lapses
            await cluster.start(cluster.run_all_in_one())

            async def missing() -> dict[str, set[str]]:
                got = await _received(sandbox, "orders")
                gaps: dict[str, set[str]] = {}
                for notification_id in ids:
                    shown = await _get(api, f"/v1/notifications/{notification_id}")
                    steps = {s["status"] for s in shown["timeline"]} - {"accepted", "queued"}
                    seen = {
                        r["payload"]["data"]["status"]
                        for r in got
                        if r["payload"]["data"]["notification_id"] == notification_id
                    }
                    # (a final callback the killed sandbox never sent may leave it 'sent')
                    if steps - seen or shown["status"] in ("queued", "sending"):
                        gaps[notification_id] = steps - seen
                return gaps

            await wait_for(missing, lambda gaps: not gaps, within=90, what="every webhook")
