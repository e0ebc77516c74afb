"""A consumer-group member as a separate process, for the contract suite.

Usage: python consumer_proc.py BUS_URL TOPIC GROUP OUT_FILE [POSTGRES_URL]
Appends one line per handled message (``key value``) to OUT_FILE *before*
settling it, so a line means "handled at least once". Exits on SIGTERM. With POSTGRES_URL, Kafka
consumers doze and are woken through that server (``pigeon.bus.kafka_doorbell``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from pigeon.bus.factory import bus_from_url
from pigeon.bus.kafka_doorbell import PostgresDoorbell
from pigeon.bus.port import ACK, Message, Outcome
from pigeon.bus.runner import ConsumerRunner


async def main(url: str, topic: str, group: str, out: str, doorbell: str = "") -> None:
    """Consume until SIGTERM."""
    # the Kafka options match tests/integration/kafka_broker.py (Tansu); SQLite ignores them
    bus = bus_from_url(
        url,
        partitions=4,
        lease_seconds=1.0,
        idempotence=False,
        session_timeout_ms=3000,
        heartbeat_interval_ms=1000,
        fetch_max_wait_ms=10,
        doorbell=PostgresDoorbell(doorbell) if doorbell else None,
    )
    await bus.start()
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def handle(messages: Sequence[Message]) -> Sequence[Outcome]:
        lines = "".join(f"{m.key} {m.value.decode()}\n" for m in messages)
        os.write(fd, lines.encode())
        # part of the scenario: some work, so a kill lands mid-batch
        await asyncio.sleep(0.002 * len(messages))
        return [ACK] * len(messages)

    runner = ConsumerRunner(
        bus.consumer(topic, group, dead_letter_topic=topic + ".dead"),
        handle,
        name="proc",
        max_batch=20,
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, runner.request_stop)
    print("ready", flush=True)
    await runner.run()
    await bus.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
