"""The embedded bus's linger: a lingering group reads at most once per interval
under steady traffic, and at once after a quiet spell."""

from __future__ import annotations

import asyncio
import itertools
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
    # no fallback poll during the test (it would end the quiet spell): every read is rung
    bus = bus_from_url(
        f"sqlite:///{tmp_path / 'bus.db'}", partitions=1, lease_seconds=1.0, poll_interval=60.0
    )
    await bus.start()
    consumer = bus.consumer(
        "steady", "meter", dead_letter_topic="steady.dead", linger_seconds=LINGER
    )
    #: per handler call: how many times the linger had held a poll back by then, the values
    calls: list[tuple[int, list[bytes]]] = []

    async def handle(messages: Sequence[Message]) -> Sequence[Outcome]:
        calls.append((consumer.lingered, [m.value for m in messages]))
        return [ACK] * len(messages)

    runner = ConsumerRunner(consumer, handle, name="meter", fetch_timeout=0.1)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 10)
        await bus.ensure_topic("steady")
        await asyncio.sleep(LINGER * 2)  # part of the scenario: a quiet spell

        # Given a lone event after a quiet spell, it is read at once, not after the linger
        held_before = consumer.lingered
        await bus.publish("steady", "k", b"lone")
        await eventually(lambda: len(calls) == 1)
        assert calls[0] == (held_before, [b"lone"])

        # When 40 events follow one by one, over about 2 lingers
        for i in range(40):
            await bus.publish("steady", "k", str(i).encode())
            await asyncio.sleep(LINGER / 20)  # part of the scenario: one by one
        await eventually(lambda: sum(len(values) for _, values in calls) == 41)

        # Then they arrive in order, in a few batches: each read of the stream after
        # its first waited for the linger (at most one read per linger)
        values = [v for _, batch in calls[1:] for v in batch]
        assert values == [str(i).encode() for i in range(40)]
        assert len(calls) - 1 <= 5, [len(batch) for _, batch in calls]
        held = [lingered for lingered, _ in calls[1:]]
        assert all(a < b for a, b in itertools.pairwise(held)), held
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, 10)
        await bus.stop()
