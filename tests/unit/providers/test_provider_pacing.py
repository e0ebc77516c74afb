"""Pacing: the token bucket's arithmetic, its SQLite sharing, and two processes on one bucket."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from tests.support import eventually

from pigeon.errors import ProviderUnavailable
from pigeon.providers.pacing import (
    InProcessTokenBucket,
    PacedProvider,
    SqliteTokenBucket,
    reserve,
)
from pigeon.providers.port import ProviderReceipt, SmsMessage

WORKER = Path(__file__).with_name("pacing_worker.py")
MESSAGE = SmsMessage(to="+14155550123", body="x")


class FakeClock:
    """A wall clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class HeldSleep:
    """A sleep that notes how long it was asked to wait and returns only when released."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.released = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.released.wait()


class Recording:
    """A provider that records what it was asked to send."""

    name = "primary"

    def __init__(self) -> None:
        self.sent: list[SmsMessage] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        self.sent.append(message)
        return ProviderReceipt("SM1", "queued", 1, self.name)


@pytest.mark.parametrize(
    ("tat", "now", "rate", "burst", "expected"),
    [
        (0.0, 100.0, 1.0, 1, (101.0, 0.0)),  # idle bucket: go now
        (101.0, 100.0, 1.0, 1, (102.0, 1.0)),  # one ahead: wait one interval
        (100.0, 100.0, 10.0, 5, (100.1, 0.0)),  # burst of 5 at 10/s: the first goes now
        (100.4, 100.0, 10.0, 5, (100.5, 0.0)),  # the fifth still goes now
        (100.5, 100.0, 10.0, 5, (100.6, 0.1)),  # the sixth waits 100 ms
        (50.0, 100.0, 2.0, 1, (100.5, 0.0)),  # a long quiet spell does not bank more than burst
    ],
)
def test_reserve_follows_gcra(
    tat: float, now: float, rate: float, burst: int, expected: tuple[float, float]
) -> None:
    """Each reservation moves tat one interval on and waits only beyond the burst."""
    new_tat, wait = reserve(tat, now, rate=rate, burst=burst)
    assert new_tat == pytest.approx(expected[0])
    assert wait == pytest.approx(expected[1])


def test_in_process_bucket_allows_a_burst_then_the_rate() -> None:
    """Three at once with burst 3, then one every half second at 2/s; quiet time refills."""
    clock = FakeClock()
    bucket = InProcessTokenBucket(rate_per_second=2.0, burst=3, clock=clock)
    waits = [bucket.reserve_now("k") for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0])
    assert bucket.reserve_now("other") == 0.0  # buckets are per key
    clock.now += 60.0
    assert [bucket.reserve_now("k") for _ in range(3)] == [0.0, 0.0, 0.0]


def test_a_refund_gives_the_slot_to_the_next_caller() -> None:
    """A token given back shortens the next caller's wait by one interval."""
    bucket = InProcessTokenBucket(rate_per_second=1.0, burst=1, clock=FakeClock())
    assert [bucket.reserve_now("k") for _ in range(3)] == [0.0, 1.0, 2.0]
    bucket.refund("k")
    assert bucket.reserve_now("k") == pytest.approx(2.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0), (1.0, 1.5)])
def test_nonsense_rates_and_bursts_are_refused(rate: float, burst: int) -> None:
    """A rate of 0 or less, or a burst that is not a whole number of at least 1, is refused."""
    with pytest.raises(ValueError):
        InProcessTokenBucket(rate_per_second=rate, burst=burst)


async def test_two_sqlite_buckets_on_one_file_share_the_tokens(tmp_path: Path) -> None:
    """Two bucket objects (two connections) on the same file draw from one schedule."""
    clock = FakeClock()
    path = tmp_path / "pacing.db"
    first = SqliteTokenBucket(path, rate_per_second=4.0, burst=2, clock=clock)
    second = SqliteTokenBucket(path, rate_per_second=4.0, burst=2, clock=clock)
    await first.start()
    await second.start()
    try:
        waits = [
            await first.reserve("k"),
            await second.reserve("k"),
            await first.reserve("k"),
            await second.reserve("k"),
        ]
        assert waits == pytest.approx([0.0, 0.0, 0.25, 0.5])
        assert await second.reserve("another") == 0.0
    finally:
        await first.stop()
        await second.stop()
        await first.stop()  # idempotent


async def test_the_sqlite_bucket_survives_a_restart_and_a_clock_set_back(tmp_path: Path) -> None:
    """State outlives the process object; a clock set back moves the schedule with it."""
    clock = FakeClock()
    path = tmp_path / "nested" / "pacing.db"
    bucket = SqliteTokenBucket(path, rate_per_second=1.0, burst=1, clock=clock)
    await bucket.start()
    assert [await bucket.reserve("k") for _ in range(3)] == pytest.approx([0.0, 1.0, 2.0])
    await bucket.stop()

    again = SqliteTokenBucket(path, rate_per_second=1.0, burst=1, clock=clock)
    await again.start()
    try:
        assert await again.reserve("k") == pytest.approx(3.0)
        clock.now -= 3600.0  # someone set the clock back an hour
        assert await again.reserve("k") == pytest.approx(4.0)
    finally:
        await again.stop()


async def test_a_bucket_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    """A state path that is a directory gives ProviderUnavailable naming the path."""
    bucket = SqliteTokenBucket(tmp_path, rate_per_second=1.0)
    with pytest.raises(ProviderUnavailable, match=str(tmp_path)):
        await bucket.start()
    with pytest.raises(ProviderUnavailable, match="not started"):
        await bucket.reserve("k")


async def test_paced_sends_wait_for_their_token_instead_of_failing() -> None:
    """Five sends at 40/s, burst 1: one goes at once, four wait 1 to 4 intervals; all succeed."""
    inner, sleep = Recording(), HeldSleep()
    paced = PacedProvider(inner, rate_per_second=40.0, burst=1, clock=FakeClock(), sleep=sleep)
    await paced.start()
    sends = asyncio.gather(*(paced.send(MESSAGE) for _ in range(5)))
    await eventually(lambda: len(sleep.asked) == 4)
    assert len(inner.sent) == 1  # the others are still waiting for their tokens
    # abs: float noise of sums at today's Unix time, far below one interval
    assert sorted(sleep.asked) == pytest.approx([1 / 40, 2 / 40, 3 / 40, 4 / 40], abs=1e-3)
    sleep.released.set()
    receipts = await sends
    await paced.stop()
    assert len(receipts) == len(inner.sent) == 5
    assert paced.name == "primary"


async def test_a_cancelled_wait_gives_its_token_back() -> None:
    """A send cancelled while waiting for its token returns it to the bucket."""
    clock = FakeClock()
    paced = PacedProvider(Recording(), rate_per_second=0.1, burst=1, clock=clock)
    await paced.start()
    await paced.send(MESSAGE)  # takes the only token; the next is due in 10 s
    waiting = asyncio.create_task(paced.send(MESSAGE))
    await asyncio.sleep(0.05)  # part of the scenario: the send is waiting for its token
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert isinstance(paced.bucket, InProcessTokenBucket)
    assert paced.bucket.reserve_now(paced.bucket_key(MESSAGE)) == pytest.approx(10.0)


def test_each_sender_number_has_its_own_bucket() -> None:
    """The default sender and an explicit From number are paced separately."""
    paced = PacedProvider(Recording(), rate_per_second=1.0, default_from="+15005550006")
    assert paced.bucket_key(MESSAGE) == "primary:+15005550006"
    explicit = SmsMessage(to="+14155550123", body="x", from_number="+15005550009")
    assert paced.bucket_key(explicit) == "primary:+15005550009"
    same = SmsMessage(to="+14155550123", body="x", from_number="+15005550006")
    assert paced.bucket_key(same) == paced.bucket_key(MESSAGE)


@pytest.mark.timeout(60)
async def test_two_processes_sharing_a_bucket_keep_the_combined_rate(tmp_path: Path) -> None:
    """Two processes sending 15 messages each through one 20/s bucket draw from one schedule.

    Both read the same fixed clock, so the waits they are given are exactly
    the shared schedule: one token at once, then one per interval up to 29
    intervals; each process alone would have waited at most 14.
    """
    rate, burst, count = 20.0, 1, 15
    state = tmp_path / "pacing.db"
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            str(state),
            str(rate),
            str(burst),
            str(count),
            str(FakeClock().now),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            async with asyncio.timeout(30):
                assert (await child.stdout.readline()).strip() == b"ready"
        outputs = []
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        for child in children:
            async with asyncio.timeout(30):
                out, _ = await child.communicate()
            assert child.returncode == 0
            outputs.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()

    assert [output["sent"] for output in outputs] == [count, count]
    waits = sorted(wait for output in outputs for wait in output["waits"])
    # abs: float noise of sums at today's Unix time, far below one interval
    assert waits == pytest.approx([k / rate for k in range(1, 2 * count - burst + 1)], abs=1e-3)
