"""``GET /v1/notifications/stream`` against a real ``pigeon run`` on each stack, over real HTTP.

A dashboard's view: open the stream, send, watch the notification reach
``delivered``; drop the connection, miss a notification, reconnect with
``Last-Event-ID`` and get exactly what was missed; filters; bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.e2e_processes import STACKS, PigeonCluster, send_sms, wait_for

STREAM = "/v1/notifications/stream"


@dataclass
class Seen:
    """What one stream connection received."""

    first_id: str = ""
    ids: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, notification_id: str) -> list[str]:
        return [
            data["status"] or "-"
            for kind, data in self.events
            if kind == "status" and data["notification_id"] == notification_id
        ]


async def _read(response: httpx.Response, seen: Seen) -> None:
    """Parse ``text/event-stream`` as a browser's EventSource does (enough of it for us)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "id" in fields:
                seen.first_id = seen.first_id or fields["id"]
                seen.ids.append(fields["id"])
            if "data" in fields:
                seen.events.append((fields.get("event", "message"), orjson.loads(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


@contextlib.asynccontextmanager
async def streaming(
    api: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[Seen]:
    """A stream open in the background while the block runs; closed after it."""
    seen = Seen()
    async with api.stream("GET", STREAM, params=params, headers=headers or {}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = asyncio.ensure_future(_read(response, seen))
        try:
            await wait_for(lambda: _now(seen.first_id), bool, within=10, what="the opening id")
            yield seen
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reader


async def _now(value: str) -> str:
    return value


async def _reaches(seen: Seen, notification_id: str, status: str) -> list[str]:
    async def statuses() -> list[str]:
        return seen.of(notification_id)

    return await wait_for(
        statuses, lambda s: status in s, within=60, what=f"{notification_id} {status} on stream"
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stack", STACKS)
async def test_the_stream_shows_every_step_and_resumes_after_a_disconnect_without_gaps(
    cluster: PigeonCluster,
) -> None:
    _process, key = await cluster.run_with_dev_key()
    other_key = cluster.create_api_key("globex")
    async with cluster.api_client(key) as api, cluster.api_client(other_key) as other:
        async with streaming(api) as seen, streaming(other) as theirs:
            first = (await send_sms(api, "+14155550123", "secret body 7Q")).json()["id"]
            steps = await _reaches(seen, first, "delivered")
            # every step, in the log's order per notification
            assert steps[0] == "queued" and steps[-1] == "delivered", steps
            assert "sending" in steps and steps.index("sending") < steps.index("delivered")
            last_id = seen.ids[-1]
            payloads = [data for _, data in seen.events]
            # never the body or the number, and every field a dashboard needs
            text = orjson.dumps(payloads).decode()
            assert "secret body" not in text and "5550123" not in text
            assert {"event_id", "type", "notification_id", "status", "at", "step"} <= set(
                payloads[-1]
            )
            assert payloads[-1]["step"]["status"] == "delivered"
        # another account's stream saw nothing of ours
        assert theirs.of(first) == []

        # missed while disconnected: a second notification, delivered meanwhile
        second = (await send_sms(api, "+14155550124", "while away")).json()["id"]
        await wait_for(
            lambda: _status(api, second),
            lambda s: s == "delivered",
            within=60,
            what="the second notification delivered",
        )
        async with streaming(api, headers={"Last-Event-ID": last_id}) as resumed:
            await _reaches(resumed, second, "delivered")
            # exactly what came after the last event seen: nothing of the first again
            assert resumed.of(first) == []
            assert resumed.of(second)[0] == "queued"

        # filters: only the notification asked for, from the same point
        async with streaming(api, notification_id=first, last_event_id=seen.first_id) as only:
            await _reaches(only, first, "delivered")
            assert {data["notification_id"] for _, data in only.events} == {first}


async def _status(api: httpx.AsyncClient, notification_id: str) -> str:
    response = await api.get(f"/v1/notifications/{notification_id}")
    return str(response.json().get("status"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", STACKS)
async def test_the_stream_refuses_bad_input_with_problems(cluster: PigeonCluster) -> None:
    _process, key = await cluster.run_with_dev_key()
    async with cluster.api_client(key) as api:
        cases = [
            ({"Last-Event-ID": "not-an-id"}, {}, "Last-Event-ID"),
            ({}, {"colour": "red"}, "colour"),
            ({}, {"metadata.": "x"}, "metadata."),
        ]
        for headers, params, named in cases:
            response = await api.get(STREAM, headers=headers, params=params)
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert named in response.text
        # an id of the other backend's form is refused the same way
        foreign = "k0.0-5" if cluster.stack == "sqlite" else "e12"
        response = await api.get(STREAM, headers={"Last-Event-ID": foreign})
        assert response.status_code == 422 and "Last-Event-ID" in response.text
    async with httpx.AsyncClient(base_url=cluster.api_url, trust_env=False) as anonymous:
        response = await anonymous.get(STREAM)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stack", STACKS)
async def test_metadata_filters_a_revoked_key_ends_it_and_a_stop_does_not_wait_for_it(
    cluster: PigeonCluster,
) -> None:
    process = cluster.run_all_in_one()
    await cluster.start(process)
    key = cluster.create_api_key("acme")
    async with cluster.api_client(key) as api:
        async with streaming(api, **{"metadata.order": "A-7"}) as filtered:
            wanted = (
                await api.post(
                    "/v1/notifications",
                    json={
                        "channel": "sms",
                        "to": "+14155550125",
                        "body": "yes",
                        "metadata": {"order": "A-7"},
                    },
                )
            ).json()["id"]
            other = (await send_sms(api, "+14155550126", "no")).json()["id"]
            await _reaches(filtered, wanted, "delivered")
            await wait_for(
                lambda: _status(api, other),
                lambda s: s == "delivered",
                within=60,
                what="the unfiltered one delivered",
            )
            assert filtered.of(other) == []

        # revoking the key ends its open stream (the server re-checks it every second)
        (row,) = [
            orjson.loads(line)
            for line in cluster.cli("keys", "list", "--json").stdout.splitlines()
            if orjson.loads(line)["account"] == "acme"
        ]
        async with api.stream("GET", STREAM) as response:
            assert response.status_code == 200
            revoked = cluster.cli("keys", "revoke", row["id"])
            assert revoked.returncode == 0, revoked.stderr
            # the body ends by itself; a stream that outlived the key would time out here
            await asyncio.wait_for(response.aread(), timeout=20)

    # a stop ends open streams cleanly (the body's last chunk, not a dropped connection)
    # instead of waiting for them until its grace period cancels everything
    dev_key = (cluster.data_dir / "dev-api-key").read_text().strip()
    async with cluster.api_client(dev_key) as api, api.stream("GET", STREAM) as response:
        assert response.status_code == 200
        process.request_stop()
        body = await asyncio.wait_for(response.aread(), timeout=30)  # no RemoteProtocolError
        assert body.startswith(b"retry: ")
    assert await asyncio.to_thread(process.terminate, 30) == 0, process.logs()
