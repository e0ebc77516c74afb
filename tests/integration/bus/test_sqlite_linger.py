"""The embedded bus's linger: a lingering group reads at most once per interval
under steady traffic, and at once after a quiet spell."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

from pigeon.bus.factory import bus_from_url
from pigeon.bus.port import ACK, Message, Outcome
from pigeon.bus.runner import ConsumerRunner
from tests.support import eventually

LINGER = 0.5


async def test_a_lingering_group_batches_a_steady_stream_and_reads_a_lone_event_at_once(
    tmp_path: Path,
) -> None:
    bus = bus_from_url(f"sqlite:///{tmp_path / 'bus.db'}", partitions=1, lease_seconds=1.0)
    await bus.start()
    calls: list[tuple[float, list[bytes]]] = []

    async def handle(messages: Sequence[Message]) -> Sequence[Outcome]:
        calls.append((time.monotonic(), [m.value for m in messages]))
        return [ACK] * len(messages)

    consumer = bus.consumer(
        "steady", "meter", dead_letter_topic="steady.dead", linger_seconds=LINGER
    )
    runner = ConsumerRunner(consumer, handle, name="meter", fetch_timeout=0.1)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 10)
        await bus.ensure_topic("steady")
        await asyncio.sleep(LINGER * 2)  # part of the scenario: a quiet spell

        # Given a lone event after a quiet spell, it is read at once, not after the linger
        published = time.monotonic()
        await bus.publish("steady", "k", b"lone")
        await eventually(lambda: len(calls) == 1)
        assert calls[0][1] == [b"lone"]
        assert calls[0][0] - published < LINGER / 2

        # When 40 events follow one by one, over about 2 lingers
        for i in range(40):
            await bus.publish("steady", "k", str(i).encode())
            await asyncio.sleep(LINGER / 20)  # part of the scenario: one by one
        await eventually(lambda: sum(len(values) for _, values in calls) == 41)

        # Then they arrive in order, in a few batches: at most one read per linger
        values = [v for _, batch in calls[1:] for v in batch]
        assert values == [str(i).encode() for i in range(40)]
        assert len(calls) - 1 <= 5, [len(batch) for _, batch in calls]
        starts = [at for at, _ in calls]
        assert all(b - a >= LINGER * 0.9 for a, b in itertools.pairwise(starts[1:]))
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, 10)
        await bus.stop()
