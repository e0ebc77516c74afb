"""What Pigeon puts on Kafka, read by a plain aiokafka consumer as docs/events.md describes it.

Nothing of Pigeon's is used to read or parse: the records are checked against
the documented envelope, keys, partitioning and headers with ``json`` and
``zlib`` only, as a program outside Pigeon would.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from typing import Any

import pytest

from tests.e2e.e2e_processes import KAFKA_POSTGRES, PigeonCluster, send_sms, statuses, wait_for
from tests.integration.kafka_reader import read_topic

COUNT = 4
ENVELOPE = {"id", "type", "version", "occurred_at", "account_id", "notification_id", "data"}
TYPES = {
    "SmsRequested",
    "SmsSending",
    "SmsAttemptFailed",
    "SmsSent",
    "SmsDelivered",
    "SmsUndelivered",
    "SmsFailed",
}
OCCURRED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
PARTITIONS = 12  # PIGEON_KAFKA_PARTITIONS' default


def recipient(i: int) -> str:
    """A valid, distinct E.164 number."""
    return f"+1650555{i:04d}"


def check_envelope(record: Any) -> dict[str, Any]:
    """The record's value parsed as the documented JSON envelope; its header and partition."""
    envelope = json.loads(record.value.decode("utf-8"))
    assert isinstance(envelope, dict)
    assert set(envelope) == ENVELOPE, envelope
    assert isinstance(envelope["id"], str)
    assert envelope["id"].startswith("evt_")
    assert envelope["type"] in TYPES
    assert type(envelope["version"]) is int
    assert envelope["version"] == 1
    assert OCCURRED_AT.match(envelope["occurred_at"]), envelope["occurred_at"]
    assert envelope["account_id"].startswith("acc_")
    assert envelope["notification_id"].startswith("ntf_")
    assert isinstance(envelope["data"], dict)
    headers = {name: value.decode("utf-8") for name, value in record.headers}
    assert headers["pigeon-event-type"] == envelope["type"]
    key = record.key.decode("utf-8")
    assert record.partition == zlib.crc32(key.encode("utf-8")) % PARTITIONS
    return envelope


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", [KAFKA_POSTGRES])
async def test_a_plain_kafka_consumer_reads_the_documented_events(cluster: PigeonCluster) -> None:
    """sms.requested and notification.status carry the envelope, keys and headers of the docs."""
    # Given Pigeon on Kafka + PostgreSQL that delivered a few SMS
    process = cluster.run_all_in_one()
    await cluster.start(process)
    key = (cluster.data_dir / "dev-api-key").read_text().strip()
    async with cluster.api_client(key) as api:
        bodies = {recipient(i): f"Wire format {i} \u20ac" for i in range(COUNT)}
        responses = await asyncio.gather(*(send_sms(api, to, b) for to, b in bodies.items()))
        assert [r.status_code for r in responses] == [202] * COUNT
        ids = {str(r.json()["id"]) for r in responses}
        await wait_for(
            lambda: statuses(api, sorted(ids)),
            lambda got: all(d["status"] == "delivered" for d in got.values()),
            within=60,
            what="every notification delivered",
        )
    assert cluster.broker is not None
    servers = cluster.broker.bootstrap_servers

    # When a plain consumer reads sms.requested
    requested = await read_topic(servers, "sms.requested", lambda got: len(got) >= COUNT)

    # Then each request is an SmsRequested envelope keyed by its recipient
    assert len(requested) == COUNT
    seen = set()
    for record in requested:
        envelope = check_envelope(record)
        assert envelope["type"] == "SmsRequested"
        data = envelope["data"]
        assert set(data) == {"to", "from_number", "body", "segments", "encoding"}
        assert record.key.decode() == data["to"]
        assert data["body"] == bodies[data["to"]]
        assert data["from_number"] is None
        assert (data["segments"], data["encoding"]) == (1, "GSM-7")
        seen.add(envelope["notification_id"])
    assert seen == ids

    # And notification.status has each notification's events keyed by it, in causal order
    def complete(got: Any) -> bool:
        delivered = [r for r in got if b'"SmsDelivered"' in r.value]
        return len(delivered) >= COUNT

    status_records = await read_topic(servers, "notification.status", complete)
    by_notification: dict[str, list[dict[str, Any]]] = {}
    for record in status_records:
        envelope = check_envelope(record)
        assert record.key.decode() == envelope["notification_id"]
        by_notification.setdefault(envelope["notification_id"], []).append(envelope)
    assert set(by_notification) == ids
    for events in by_notification.values():
        # the sender's SmsSending and SmsSent, the provider's "sent" and "delivered"
        # callbacks (SmsSent again, then SmsDelivered), in the order they happened
        types = [e["type"] for e in events]
        assert types[0] == "SmsSending"
        assert types[-1] == "SmsDelivered"
        assert set(types) == {"SmsSending", "SmsSent", "SmsDelivered"}
        assert types.index("SmsSent") < types.index("SmsDelivered")
        assert len({e["id"] for e in events}) == len(events)
        message_ids = {e["data"]["provider_message_id"] for e in events[1:]}
        assert len(message_ids) == 1
        assert isinstance(message_ids.pop(), str)
