"""A member that joins a busy group gets its share, on every backend.

Scale-out depends on it: a second sms-sender started while the first works
through a backlog must take partitions from it, although the first never
goes idle (it always has a batch in flight).
"""

from __future__ import annotations

import asyncio

from pigeon.bus.port import ACK, Batch, Consumer

from .conftest import BusFactory, eventually

KEYS = [f"+1415555{i:04d}" for i in range(64)]  # spread over every partition


async def _work(consumer: Consumer, seen: list[Batch], stop: asyncio.Event) -> None:
    """Like the consumer runner: batches of several partitions handled at once, and
    fetching again while they are in flight, so a busy member is never idle."""
    tasks: set[asyncio.Task[None]] = set()

    async def handle(batch: Batch) -> None:
        await asyncio.sleep(0.05)  # part of the scenario: a little work per batch
        await consumer.settle(batch, [ACK] * len(batch.messages))

    while not stop.is_set():
        for batch in await consumer.fetch(8, 0.01):
            seen.append(batch)
            task = asyncio.create_task(handle(batch))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


async def test_a_member_joining_a_busy_group_takes_partitions_from_it(
    make_bus: BusFactory, topic: str
) -> None:
    bus = await make_bus()
    await bus.ensure_topic(topic, 4)
    for round_ in range(100):  # a backlog the first member cannot finish quickly
        for key in KEYS:
            await bus.publish(topic, key, f"{round_}".encode())
    first = bus.consumer(topic, "g", dead_letter_topic=topic + ".dead")
    second = bus.consumer(topic, "g", dead_letter_topic=topic + ".dead")
    stop = asyncio.Event()
    first_seen: list[Batch] = []
    second_seen: list[Batch] = []
    await first.start()
    worker_one = asyncio.create_task(_work(first, first_seen, stop))
    try:
        await eventually(lambda: len(first_seen) >= 5, within=20)
        await second.start()
        worker_two = asyncio.create_task(_work(second, second_seen, stop))
        try:
            await eventually(lambda: len(second_seen) >= 3, within=30)
            # the second member works: the first's next batches come from what it kept
            # (on a loaded machine the first may not have fetched since the hand-over)
            handed_over = len(first_seen)
            await eventually(lambda: len(first_seen) >= handed_over + 3, within=30)
        finally:
            stop.set()
            await worker_two
    finally:
        stop.set()
        await worker_one
        await first.stop()
        await second.stop()
    first_partitions = {b.partition for b in first_seen[handed_over:]}
    second_partitions = {b.partition for b in second_seen}
    assert second_partitions
    assert not first_partitions & second_partitions  # no partition worked by both at the end
