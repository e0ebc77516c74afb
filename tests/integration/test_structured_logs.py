"""Structured logs of a real ``pigeon run``: JSON lines, ids as fields, no number, no body.

Pigeon runs as the installed command (API, workers and sandbox, on each stack) with
``PIGEON_LOG_FORMAT=json`` and ``PIGEON_ACCESS_LOG=true``; the test reads what the
processes wrote to stderr.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.e2e_processes import (
    KAFKA_POSTGRES,
    STACKS,
    PigeonCluster,
    PigeonProcess,
    send_sms,
    statuses,
    wait_for,
)
from tests.integration.kafka_broker import running_broker
from tests.integration.postgres import fresh_schema
from tests.support import eventually

#: distinctive enough that finding them anywhere in the output can only mean a leak
DELIVERED_TO = "+12125550187"
FAILED_TO = "+12125550164"
BODY = "Your pickle code is 734-ZEBRA-991"
#: ISO 8601, UTC, to the millisecond
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(params=STACKS)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PigeonCluster]:
    """Pigeon processes on one stack, logging JSON with the access log on."""
    with contextlib.ExitStack() as resources:
        if request.param == KAFKA_POSTGRES:
            broker = resources.enter_context(running_broker())
            database_url = resources.enter_context(fresh_schema())
            pigeon = PigeonCluster(tmp_path, database_url=database_url, broker=broker)
        else:
            pigeon = PigeonCluster(tmp_path)
        pigeon.env.update({"PIGEON_LOG_FORMAT": "json", "PIGEON_ACCESS_LOG": "true"})
        try:
            yield pigeon
        finally:
            pigeon.stop_all()


def _records(process: PigeonProcess) -> list[dict[str, Any]]:
    """Every line the process (and its children) wrote to stderr, each one JSON object."""
    records = []
    for line in process.stderr().splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"a stderr line that is not JSON: {line!r}") from None
        assert isinstance(record, dict), line
        records.append(record)
    return records


def _account_id(cluster: PigeonCluster, account: str) -> tuple[str, str]:
    """A new API key of ``account``: ``(account id, key)``."""
    done = cluster.cli("keys", "create", "--account", account)
    assert done.returncode == 0, done.stderr
    found = re.search(r"^account: \S+ \((acc_\w+)\)$", done.stdout, re.MULTILINE)
    key = re.search(r"^api key: (\S+)$", done.stdout, re.MULTILINE)
    assert found is not None and key is not None, done.stdout
    return found.group(1), key.group(1)


def _final_line(process: PigeonProcess, notification_id: str) -> dict[str, Any] | None:
    for record in _records(process):
        if record["logger"] == "pigeon.notifications" and (
            record.get("notification_id") == notification_id
        ):
            return record
    return None


@pytest.mark.timeout(150)
async def test_logs_are_json_lines_with_ids_as_fields_and_never_a_number_or_a_body(
    cluster: PigeonCluster,
) -> None:
    """One delivered and one rejected SMS: each ends in one final line with its ids as
    fields, requests are logged by route, and neither number nor the body is in any output."""
    # Given `pigeon run` logging JSON, and an account
    process = cluster.run_all_in_one()
    await cluster.start(process)
    account_id, key = _account_id(cluster, "structured-logs")

    async with cluster.api_client(key) as api, cluster.sandbox_client() as sandbox:
        # When one SMS is delivered
        sent = await send_sms(api, DELIVERED_TO, BODY)
        assert sent.status_code == 202, sent.text
        delivered_id = str(sent.json()["id"])
        await wait_for(
            lambda: statuses(api, [delivered_id]),
            lambda got: got[delivered_id]["status"] == "delivered",
            within=30,
            what="the first SMS delivered",
        )
        # And the provider rejects the next one for good (Twilio 21610: unsubscribed)
        faults = await sandbox.put("/sandbox/faults", json={"error_codes": {"21610": 1.0}})
        assert faults.status_code == 200, faults.text
        sent = await send_sms(api, FAILED_TO, BODY)
        assert sent.status_code == 202, sent.text
        failed_id = str(sent.json()["id"])
        await wait_for(
            lambda: statuses(api, [failed_id]),
            lambda got: got[failed_id]["status"] == "failed",
            within=30,
            what="the second SMS failed",
        )

    # Then each notification's final state is one line with its ids as fields
    await eventually(lambda: _final_line(process, failed_id) is not None, within=10)
    await eventually(lambda: _final_line(process, delivered_id) is not None, within=10)
    records = _records(process)
    finals = [r for r in records if r["logger"] == "pigeon.notifications"]
    assert len(finals) == 2, finals
    delivered, failed = _final_line(process, delivered_id), _final_line(process, failed_id)
    assert delivered is not None and failed is not None
    assert {k: delivered[k] for k in ("level", "message", "account_id", "status", "attempts")} == {
        "level": "info",
        "message": "notification delivered",
        "account_id": account_id,
        "status": "delivered",
        "attempts": 1,
    }
    assert {k: failed[k] for k in ("account_id", "status", "attempts")} == {
        "account_id": account_id,
        "status": "failed",
        "attempts": 1,
    }
    assert delivered["provider"] == failed["provider"]
    assert isinstance(delivered["provider"], str) and delivered["provider"]
    # And the rejection was logged with the ids as fields and the number masked
    rejected = [
        r
        for r in records
        if r["message"] == "rejected by the provider" and r.get("notification_id") == failed_id
    ]
    assert rejected, records
    assert rejected[0]["to"] == "+1212***0164"
    assert rejected[0]["account_id"] == account_id
    # And every line has a millisecond UTC timestamp, a level, a logger and a message
    for record in records:
        assert TIMESTAMP.match(record["ts"]), record
        assert record["level"] in ("debug", "info", "warning", "error", "critical"), record
        assert isinstance(record["logger"], str) and isinstance(record["message"], str), record
    # And requests are logged by their route's template, without ids
    access = [r for r in records if r["logger"] == "pigeon.access"]
    assert {"method": "POST", "path": "/v1/notifications", "status": 202} in [
        {k: r[k] for k in ("method", "path", "status")} for r in access
    ], access
    assert {"method": "GET", "path": "/v1/notifications/{notification_id}", "status": 200} in [
        {k: r[k] for k in ("method", "path", "status")} for r in access
    ], access
    assert all(isinstance(r["duration_ms"], float) for r in access), access
    assert not [r for r in access if delivered_id in r["path"]], access
    # And no output of any process holds a number or the body
    output = process.stdout() + process.stderr()
    for secret in (DELIVERED_TO[-7:], FAILED_TO[-7:], BODY, "734-ZEBRA-991"):
        assert secret not in output, f"{secret!r} is in the output"
