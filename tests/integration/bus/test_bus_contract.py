"""The event-bus contract: every backend must pass this suite unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from pigeon.bus.port import (
    ACK,
    HEADER_DEAD_REASON,
    HEADER_ORIGINAL_TOPIC,
    DeadLetter,
    EventBus,
    Message,
    Outcome,
    RetryLater,
)
from pigeon.bus.runner import ConsumerRunner
from tests.integration.postgres import POSTGRES_URL

from .conftest import BusFactory, eventually

Decide = Callable[[Message], Outcome]


class Collector:
    """Runs one group member and records every message it is handed."""

    def __init__(
        self,
        bus: EventBus,
        topic: str,
        group: str,
        decide: Decide | None = None,
        *,
        together: bool = False,
    ):
        self.seen: list[Message] = []
        #: the wall clock (Unix seconds) when each message was handed over
        self.seen_at: list[float] = []
        #: the partitions of each handler call
        self.calls: list[set[int]] = []
        self._decide = decide or (lambda _m: ACK)
        consumer = bus.consumer(topic, group, dead_letter_topic=topic + ".dead")
        self.runner = ConsumerRunner(
            consumer, self._handle, name=group, fetch_timeout=0.1, together=together
        )
        self._task: asyncio.Task[None] | None = None

    async def _handle(self, messages: Sequence[Message]) -> Sequence[Outcome]:
        now = time.time()  # the clock retry due times are recorded on
        self.calls.append({m.partition for m in messages})
        self.seen.extend(messages)
        self.seen_at.extend([now] * len(messages))
        return [self._decide(m) for m in messages]

    @property
    def data(self) -> list[Message]:
        """Messages seen, markers (see :func:`after_markers`) left out."""
        return [m for m in self.seen if m.value != MARKER]

    def values(self) -> list[str]:
        """Payloads seen, in the order they were handed over (markers left out)."""
        return [m.value.decode() for m in self.data]

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self.runner.run())
        await asyncio.wait_for(self.runner.started.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.runner.request_stop()
        assert self._task is not None
        await asyncio.wait_for(self._task, 10)


@contextlib.asynccontextmanager
async def collecting(
    bus: EventBus, topic: str, group: str, decide: Decide | None = None, *, together: bool = False
) -> AsyncIterator[Collector]:
    """A running :class:`Collector`, stopped on exit."""
    async with Collector(bus, topic, group, decide, together=together) as collector:
        yield collector


#: the payload of a marker message
MARKER = b"marker"


async def after_markers(
    bus: EventBus, topic: str, *collectors: Collector, keys: Sequence[str]
) -> None:
    """Publish a marker on each of ``keys``, and return once every collector was handed
    all of them: a key's earlier messages come before its marker (per-key order), so
    whatever the collectors were going to get of those, they have got. Tests that show
    something does *not* happen wait for this, not for a sleep."""
    for key in keys:
        await bus.publish(topic, key, MARKER)
    await eventually(
        lambda: all(sum(m.value == MARKER for m in c.seen) >= len(keys) for c in collectors)
    )


async def publish_range(bus: EventBus, topic: str, count: int, keys: int = 3) -> None:
    """Publish ``count`` messages ``k<i % keys>`` / ``<i>``."""
    await bus.ensure_topic(topic)
    for i in range(count):
        await bus.publish(topic, f"k{i % keys}", str(i).encode(), {"n": str(i)})


async def test_messages_with_one_key_arrive_in_publish_order(
    make_bus: BusFactory, topic: str
) -> None:
    """Given 150 messages over 3 keys, each key's messages are handled in publish order."""
    bus = await make_bus()
    await publish_range(bus, topic, 150)
    async with collecting(bus, topic, "order") as c:
        await eventually(lambda: len(c.seen) >= 150)
    by_key: dict[str, list[int]] = {}
    for m in c.seen:
        by_key.setdefault(m.key, []).append(int(m.value))
    assert set(by_key) == {"k0", "k1", "k2"}
    for values in by_key.values():
        assert values == sorted(values)
    assert sorted(int(v) for v in c.values()) == list(range(150))
    assert c.seen[0].headers["n"] == c.seen[0].value.decode()


async def test_every_group_receives_every_message(make_bus: BusFactory, topic: str) -> None:
    """Two groups on one topic each get all messages: fan-out."""
    bus = await make_bus()
    async with collecting(bus, topic, "meter") as a, collecting(bus, topic, "sender") as b:
        await publish_range(bus, topic, 40)
        await eventually(lambda: len(a.seen) >= 40 and len(b.seen) >= 40)
    assert sorted(a.values(), key=int) == sorted(b.values(), key=int)
    assert len(a.seen) == len(b.seen) == 40


async def test_a_restarted_group_resumes_after_its_last_settled_position(
    make_bus: BusFactory, topic: str
) -> None:
    """A group that stops and comes back gets only what was published meanwhile."""
    bus = await make_bus()
    await publish_range(bus, topic, 20)
    async with collecting(bus, topic, "resume") as first:
        await eventually(lambda: len(first.seen) >= 20)
    await publish_range(bus, topic, 10)  # while the group is down
    later = await make_bus()  # a new process
    async with collecting(later, topic, "resume") as second:
        await eventually(lambda: len(second.seen) >= 10)
        await after_markers(later, topic, second, keys=["k0", "k1", "k2"])
    assert len(first.seen) == 20
    assert len(second.data) == 10


async def test_a_batch_never_settled_is_delivered_again(make_bus: BusFactory, topic: str) -> None:
    """A member that fetched but never settled (crashed mid-batch) loses nothing."""
    bus = await make_bus()
    await publish_range(bus, topic, 5, keys=1)
    crashed = bus.consumer(topic, "redeliver", dead_letter_topic=topic + ".dead")
    await crashed.start()
    fetched: list[Message] = []
    deadline = time.monotonic() + 5
    while len(fetched) < 5 and time.monotonic() < deadline:
        for batch in await crashed.fetch(100, 0.2):
            fetched.extend(batch.messages)
    assert len(fetched) == 5
    await crashed.stop()  # leaves without settling
    other = await make_bus()
    async with collecting(other, topic, "redeliver") as c:
        await eventually(lambda: len(c.seen) >= 5)
    assert sorted(c.values(), key=int) == [m.value.decode() for m in fetched]


async def test_retry_later_redelivers_after_the_delay_without_blocking_other_keys(
    make_bus: BusFactory, topic: str
) -> None:
    """A retried message comes back after its delay with attempt 2; other keys flow on.

    The backend records when the retry is due; it was set the delay after the
    handler asked for it, and the retry was not handed over before it.
    """
    bus = await make_bus()
    asked_at: list[float] = []

    def decide(m: Message) -> Outcome:
        if m.key == "slow" and m.attempt == 1:
            asked_at.append(time.time())
            return RetryLater(0.5, "provider busy")
        return ACK

    async with collecting(bus, topic, "retry", decide) as c:
        await bus.ensure_topic(topic)
        await bus.publish(topic, "slow", b"s")
        for i in range(10):
            await bus.publish(topic, f"fast{i}", str(i).encode())
        await eventually(lambda: sum(m.key == "slow" for m in c.seen) == 2)
    slow = [(m, t) for m, t in zip(c.seen, c.seen_at, strict=True) if m.key == "slow"]
    assert [m.attempt for m, _ in slow] == [1, 2]
    (first, _), (retry, handed_over_at) = slow
    assert first.not_before is None
    assert retry.not_before is not None
    # the due time honours the delay, and the retry did not come back before it
    assert retry.not_before >= asked_at[0] + 0.5
    assert handed_over_at >= retry.not_before
    assert retry.value == b"s"
    # the fast keys did not wait for the retry delay: all were handled before it came back
    handled_before_retry = c.seen[: c.seen.index(slow[1][0])]
    assert sum(m.key.startswith("fast") for m in handled_before_retry) == 10


async def test_a_dead_lettered_message_moves_to_the_dead_letter_topic_with_its_reason(
    make_bus: BusFactory, topic: str
) -> None:
    """Dead-lettering takes the message out of the group and onto ``<topic>.dead``."""
    bus = await make_bus()

    def decide(m: Message) -> Outcome:
        return DeadLetter("cannot parse") if m.value == b"poison" else ACK

    async with (
        collecting(bus, topic, "dlq", decide) as c,
        collecting(bus, topic + ".dead", "dlq-reader") as dead,
    ):
        await bus.ensure_topic(topic)
        for value in (b"1", b"poison", b"2"):
            await bus.publish(topic, "k", value)
        await eventually(lambda: len(dead.seen) >= 1 and len(c.seen) >= 3)
        await after_markers(bus, topic, c, keys=["k"])
    assert [m.value for m in c.data] == [b"1", b"poison", b"2"]  # not redelivered
    (letter,) = dead.seen
    assert letter.value == b"poison"
    assert letter.headers[HEADER_DEAD_REASON] == "cannot parse"
    assert letter.headers[HEADER_ORIGINAL_TOPIC] == topic


async def test_batches_of_several_partitions_settled_together_keep_each_outcome(
    make_bus: BusFactory, topic: str
) -> None:
    """One handler call for several partitions' batches (a set-based group): every
    message's outcome holds, and the group's position moves past all of them."""
    bus = await make_bus()
    await publish_range(bus, topic, 60, keys=12)

    def decide(m: Message) -> Outcome:
        if m.value == b"7" and m.attempt == 1:
            return RetryLater(0.2, "try again")
        return DeadLetter("cannot parse") if m.value == b"9" else ACK

    async with (
        collecting(bus, topic, "together", decide, together=True) as c,
        collecting(bus, topic + ".dead", "together-dead") as dead,
    ):
        await eventually(lambda: len(c.seen) >= 61 and len(dead.seen) >= 1)
    assert any(len(partitions) > 1 for partitions in c.calls)
    assert sorted(int(v) for v in c.values()) == sorted([*range(60), 7])
    assert [m.attempt for m in c.seen if m.value == b"7"] == [1, 2]
    assert [m.value for m in dead.seen] == [b"9"]
    later = await make_bus()  # a new process of the group finds nothing left
    async with collecting(later, topic, "together") as again:
        await after_markers(later, topic, again, keys=[f"k{i}" for i in range(12)])
    assert again.data == []


async def test_first_delivery_of_a_committed_message_is_prompt(
    make_bus: BusFactory, bus_backend: str, topic: str
) -> None:
    """A consumer in another process, gone idle, is woken by each committed message
    (a ring): none of them waits for the fallback timer."""
    publisher = await make_bus()
    consumer_side = await make_bus()  # another instance: no in-process wake-up
    await publisher.ensure_topic(topic)
    async with collecting(consumer_side, topic, "prompt") as c:
        await asyncio.sleep(0.3)  # part of the scenario: the consumer has gone idle
        wakes = c.runner.consumer.wakes
        before = replace(wakes)
        for i in range(10):
            await publisher.publish(topic, "k", str(i).encode())
            await eventually(lambda n=i: len(c.seen) > n, interval=0.001)
    assert c.values() == [str(i) for i in range(10)]
    # no message waited for the fallback timer (SQLite's 1 s poll, a doze's 5 s) ...
    assert wakes.fallback == before.fallback
    # ... each was announced: SQLite polls only when rung (or on that timer); a dozing
    # Kafka member was rung awake at least for the first; a long-polling one (plain
    # Kafka) never waits on its own: the broker answers its fetch
    rung = wakes.rung - before.rung
    expected = {"sqlite": 10, "kafka-doorbell": 1, "kafka": 0}[bus_backend]
    assert rung >= expected


def _spawn(bus_url: str, topic: str, group: str, out: Path, doorbell: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("consumer_proc.py")),
            bus_url,
            topic,
            group,
            str(out),
            doorbell,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.timeout(90)
async def test_two_processes_share_a_group_and_a_kill_9_loses_nothing(
    make_bus: BusFactory, bus_url: str, bus_backend: str, topic: str, tmp_path: Path
) -> None:
    """Two processes split one group's partitions; after kill -9 of one, the other finishes."""
    bus = await make_bus()
    await bus.ensure_topic(topic)
    out_a, out_b = tmp_path / "a.txt", tmp_path / "b.txt"
    doorbell = POSTGRES_URL if bus_backend == "kafka-doorbell" else ""
    a = _spawn(bus_url, topic, "pair", out_a, doorbell)
    b = _spawn(bus_url, topic, "pair", out_b, doorbell)

    def lines(path: Path) -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    try:
        # Publish in waves until both members have handled a share (joining a
        # group takes a while, longer on a loaded machine), then 200 more.
        total = 0
        deadline = time.monotonic() + 30
        while not (len(lines(out_a)) > 50 and len(lines(out_b)) > 50):
            assert time.monotonic() < deadline, "the two members never shared the work"
            for _ in range(50):
                await bus.publish(topic, f"key{total % 40}", str(total).encode())
                total += 1
            await asyncio.sleep(0.1)  # part of the scenario: publishing in waves
        for _ in range(200):
            await bus.publish(topic, f"key{total % 40}", str(total).encode())
            total += 1
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        await eventually(
            lambda: {int(x.split()[1]) for x in lines(out_a) + lines(out_b)} >= set(range(total)),
            30,
        )
        seen_a = {x.split()[1] for x in lines(out_a)}
        seen_b = {x.split()[1] for x in lines(out_b)}
        assert seen_a and seen_b, "both processes took a share of the partitions"
        # duplicates are allowed (at-least-once) but only for what A had not settled
        duplicates = len(lines(out_a)) + len(lines(out_b)) - total
        assert duplicates <= 4 * 20  # at most one unsettled batch per partition
        # per-key order holds within each process's log
        for path in (out_a, out_b):
            by_key: dict[str, list[int]] = {}
            for line in lines(path):
                key, value = line.split()
                by_key.setdefault(key, []).append(int(value))
            for values in by_key.values():
                deduped = list(dict.fromkeys(values))
                assert deduped == sorted(deduped)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
