"""Giving memory back once work stops (pigeon.memory)."""

from __future__ import annotations

import asyncio

from pigeon.memory import QuietTrim, _glibc_trim

QUIET = 0.02


class Trims:
    """A fake ``malloc_trim``: counts calls and lets a test wait for the next."""

    def __init__(self) -> None:
        self.calls = 0
        self.done = asyncio.Event()

    def __call__(self) -> int:
        self.calls += 1
        self.done.set()
        return 1


async def test_a_burst_of_work_is_followed_by_one_trim_once_quiet() -> None:
    """Many batches, then nothing: one trim, and no timer left armed."""
    trims = Trims()
    quiet = QuietTrim(trims, quiet_seconds=QUIET)
    for _ in range(50):
        quiet.worked()
    await asyncio.wait_for(trims.done.wait(), timeout=5)
    assert trims.calls == 1 and quiet.trims == 1
    assert quiet._timer is None


async def test_no_trim_while_work_goes_on() -> None:
    """Work every quarter period for several periods: nothing is trimmed until it stops."""
    trims = Trims()
    quiet = QuietTrim(trims, quiet_seconds=QUIET)
    for _ in range(20):  # the scenario's own timing: batches arriving steadily
        quiet.worked()
        await asyncio.sleep(QUIET / 4)
    assert trims.calls == 0
    await asyncio.wait_for(trims.done.wait(), timeout=5)
    assert trims.calls == 1


async def test_an_idle_process_arms_nothing_and_a_new_burst_trims_again() -> None:
    """Without work no timer exists; each burst after a quiet spell gets its own trim."""
    trims = Trims()
    quiet = QuietTrim(trims, quiet_seconds=QUIET)
    assert quiet._timer is None
    for burst in (1, 2):
        trims.done.clear()
        quiet.worked()
        await asyncio.wait_for(trims.done.wait(), timeout=5)
        assert trims.calls == burst
        assert quiet._timer is None


def test_a_timer_from_an_earlier_event_loop_does_not_block_the_next() -> None:
    """One process may run event loops in turn: work on a new loop arms a timer there."""
    trims = Trims()
    quiet = QuietTrim(trims, quiet_seconds=QUIET)

    async def work_then_leave() -> None:
        quiet.worked()  # the loop ends before the timer fires

    asyncio.run(work_then_leave())
    assert trims.calls == 0

    async def work_and_wait() -> None:
        trims.done = asyncio.Event()
        quiet.worked()
        await asyncio.wait_for(trims.done.wait(), timeout=5)

    asyncio.run(work_and_wait())
    assert trims.calls == 1


async def test_without_malloc_trim_nothing_is_armed() -> None:
    """A C library without malloc_trim (musl, macOS): work is noted, nothing scheduled."""
    quiet = QuietTrim(None, quiet_seconds=QUIET)  # what _glibc_trim gives there
    quiet.worked()
    assert quiet._timer is None


def test_glibc_trim_is_found_and_callable_on_linux() -> None:
    """On Linux with glibc the real malloc_trim is found and returns 0 or 1."""
    trim = _glibc_trim()
    assert trim is not None
    assert trim() in (0, 1)
