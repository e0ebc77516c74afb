"""The chaos run: many SMS through separate processes while everything goes wrong.

The sandbox fails about 30 % of sends (5xx, hanging requests that time out,
429 with Retry-After), drops the connection after accepting some, fails a few
permanently, duplicates and reorders callbacks; meanwhile the sms-sender is
killed with ``kill -9`` three times and the API once, each restarted at once.
Clients behave as good clients do: they retry a request that got no answer
with the same ``Idempotency-Key``.

At the end every ``202``-answered notification must be delivered exactly once
in the sandbox or ``failed`` with a reason, usage must be exact, nothing may be
stuck, and the dead letters must be exactly the failed notifications.

``tests/e2e/test_e2e_chaos.py`` runs it with 2,000 SMS; for a bigger run::

    .venv/bin/python -m tests.e2e.chaos --count 10000
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from tests.e2e.e2e_processes import PigeonCluster, PigeonProcess, inbox, usage_today
from tests.support import eventually

#: about 30 % of sends fail transiently, 1 % permanently (an unsubscribed number)
FAULTS: dict[str, Any] = {
    "error_codes": {"20500": 0.10, "21610": 0.01},
    "timeout_rate": 0.10,
    "rate_429": 0.10,
    "retry_after_s": 1,
    "drop_after_accept_rate": 0.03,
    "duplicate_callback_rate": 0.05,
    "out_of_order_callback_rate": 0.05,
}
FINAL = ("delivered", "failed", "undelivered")
ENV = {
    "PIGEON_PROVIDER_TIMEOUT_SECONDS": "1",  # a hung send is given up after 1 s
    "PIGEON_RETRY_BASE_SECONDS": "0.2",
    "PIGEON_RETRY_MAX_SECONDS": "2",
    "PIGEON_BREAKER_RESET_SECONDS": "0.5",
    "PIGEON_BREAKER_FAILURE_THRESHOLD": "20",
    # callbacks lost while the API was down are recovered by polling the provider
    "PIGEON_STATUS_POLL_AFTER_SECONDS": "3",
    "PIGEON_STATUS_POLL_INTERVAL_SECONDS": "1",
}


@dataclass
class ChaosReport:
    """What happened, in numbers."""

    count: int
    accepted: int = 0
    client_retries: int = 0
    sender_kills: int = 0
    api_kills: int = 0
    load_seconds: float = 0.0
    drain_seconds: float = 0.0
    delivered: int = 0
    failed: int = 0
    other_final: int = 0
    stuck: int = 0
    sent_once: int = 0
    duplicates: int = 0
    not_in_inbox: int = 0
    usage_messages: int = 0
    expected_segments: int = 0
    usage_segments: int = 0
    dead_letters: int = 0
    dead_letters_match_failed: bool = False
    failed_without_reason: int = 0
    sandbox_stats: dict[str, Any] = field(default_factory=dict)


class _Load:
    def __init__(self, api_url: str, key: str, count: int, concurrency: int) -> None:
        self.client = httpx.AsyncClient(
            base_url=api_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10.0,
            trust_env=False,
            limits=httpx.Limits(max_connections=concurrency),
        )
        self.count = count
        self.slots = asyncio.Semaphore(concurrency)
        self.ids: dict[int, str] = {}
        self.retries = 0

    async def one(self, index: int) -> None:
        body = {
            "channel": "sms",
            "to": f"+1415{5550000 + index % 997:07d}",
            "body": f"chaos {index}",
        }
        headers = {"Idempotency-Key": f"chaos-{index}"}
        async with self.slots:
            while True:
                try:
                    response = await self.client.post(
                        "/v1/notifications", json=body, headers=headers
                    )
                except httpx.TransportError:
                    self.retries += 1  # no answer: retry with the same key
                    await asyncio.sleep(0.2)  # part of the scenario: a client's backoff
                    continue
                if response.status_code == 202:
                    self.ids[index] = response.json()["id"]
                    return
                if response.status_code in (502, 503):
                    self.retries += 1
                    await asyncio.sleep(0.2)  # part of the scenario: a client's backoff
                    continue
                raise AssertionError(f"request {index}: {response.status_code} {response.text}")


async def _restart(cluster: PigeonCluster, process: PigeonProcess, fresh: PigeonProcess) -> None:
    process.kill9()
    await cluster.start(fresh)


def _db_statuses(path: Path, ids: set[str]) -> dict[str, tuple[str, str | None]]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT id, status, last_error FROM notifications").fetchall()
    return {nid: (status, error) for nid, status, error in rows if nid in ids}


async def run_chaos(
    cluster: PigeonCluster,
    *,
    count: int = 2000,
    concurrency: int = 16,
    drain_within: float = 240.0,
    progress: bool = False,
    kill_plan: tuple[tuple[float, str], ...] = (
        (0.15, "sender"),
        (0.35, "sender"),
        (0.45, "api"),
        (0.60, "sender"),
    ),
) -> ChaosReport:
    """Run the chaos scenario on ``cluster`` (the embedded stack) and measure it."""
    cluster.env.update(ENV)
    sandbox = cluster.sandbox()
    await cluster.start(sandbox)
    async with cluster.sandbox_client() as control:
        answer = await control.put("/sandbox/faults", json=FAULTS)
        assert answer.status_code == 200, answer.text
    api = cluster.api()
    sender = cluster.worker("sms-sender")
    others = [cluster.worker("usage-meter"), cluster.worker("status-projector")]
    await cluster.start(api, sender, *others)
    key = cluster.create_api_key("chaos")
    report = ChaosReport(count=count)
    load = _Load(cluster.api_url, key, count, concurrency)

    async def chaos_monkey() -> None:
        nonlocal api, sender
        # kill by progress, so the kills land mid-run whatever the machine's speed
        for share, victim in kill_plan:
            await eventually(
                lambda share=share: len(load.ids) >= share * count,
                within=600,
            )
            if victim == "sender":
                fresh = cluster.worker("sms-sender")
                await _restart(cluster, sender, fresh)
                sender, report.sender_kills = fresh, report.sender_kills + 1
            else:
                fresh = cluster.api()
                await _restart(cluster, api, fresh)
                api, report.api_kills = fresh, report.api_kills + 1
            if progress:
                print(f"  killed the {victim} at {len(load.ids)}/{count}", file=sys.stderr)

    started = time.monotonic()
    monkey = asyncio.create_task(chaos_monkey())
    await asyncio.gather(*(load.one(i) for i in range(count)))
    await monkey
    report.load_seconds = time.monotonic() - started
    report.accepted = len(load.ids)
    report.client_retries = load.retries
    ids = set(load.ids.values())

    drain_started = time.monotonic()
    db = cluster.data_dir / "pigeon.db"
    while True:
        states = _db_statuses(db, ids)
        pending = [nid for nid in ids if states.get(nid, ("missing",))[0] not in FINAL]
        if not pending or time.monotonic() - drain_started > drain_within:
            break
        if progress:
            print(f"  draining: {len(pending)} not final yet", file=sys.stderr)
        await asyncio.sleep(1.0)  # part of the scenario: the drain is watched once a second
    report.drain_seconds = time.monotonic() - drain_started
    report.stuck = len(pending)
    statuses = Counter(state for state, _ in states.values())
    report.delivered = statuses["delivered"]
    report.failed = statuses["failed"]
    report.other_final = statuses["undelivered"]
    report.failed_without_reason = sum(
        1 for state, error in states.values() if state == "failed" and not error
    )

    # part of the scenario: a window for late duplicates. No marker can prove their
    # absence: a send a killed sender had started has no later message to wait for.
    await asyncio.sleep(1.0)
    async with cluster.sandbox_client() as control:
        messages = await inbox(control)
        report.sandbox_stats = (await control.get("/sandbox/stats")).json()
    per_notification = Counter(
        parse_qs(urlsplit(m["status_callback"] or "").query).get("n", [""])[0] for m in messages
    )
    report.sent_once = sum(1 for nid in ids if per_notification[nid] == 1)
    report.duplicates = sum(max(0, per_notification[nid] - 1) for nid in ids)
    failed_ids = {nid for nid, (state, _) in states.items() if state == "failed"}
    report.not_in_inbox = sum(
        1 for nid in ids if per_notification[nid] == 0 and nid not in failed_ids
    )

    async with httpx.AsyncClient(
        base_url=cluster.api_url, headers={"Authorization": f"Bearer {key}"}, trust_env=False
    ) as client:
        report.usage_messages, report.usage_segments = await usage_today(client)
    report.expected_segments = report.accepted  # every body is one GSM-7 segment

    listed = cluster.cli("dlq", "list", "--json", "--limit", "100000")
    assert listed.returncode == 0, listed.stderr
    letters = [orjson.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    report.dead_letters = len(letters)
    report.dead_letters_match_failed = Counter(
        letter["notification_id"] for letter in letters
    ) == Counter(failed_ids)
    return report


def main() -> None:
    """``python -m tests.e2e.chaos --count N``: run it and print the report as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pigeon-chaos-") as root:
        cluster = PigeonCluster(Path(root))
        try:
            report = asyncio.run(
                run_chaos(cluster, count=args.count, concurrency=args.concurrency, progress=True)
            )
        finally:
            cluster.stop_all()
    print(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
