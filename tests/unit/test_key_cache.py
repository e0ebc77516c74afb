"""The API key cache: one read per key at a time, refreshed ahead, forgets at once.

Unit tests of one module: the database read is a fake that counts its calls and
can be held open; the clock is a variable.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.support import Clock

from pigeon.domain.notification import Account
from pigeon.store.key_cache import KeyCache

ACME = Account("acc_1", "acme")
CHANGED = Account("acc_1", "acme", is_admin=True)


class FakeDatabase:
    """Answers ``answer`` for every key; ``gate`` (when set) holds each read until opened."""

    def __init__(self) -> None:
        self.answer: Account | None = ACME
        self.reads = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def read(self, digest: str) -> Account | None:
        self.reads += 1
        answer = self.answer  # what the database holds when the read starts
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise OSError("database gone")
        return answer


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(db: FakeDatabase, clock: Clock) -> KeyCache:
    return KeyCache(db.read, seconds=1.0, ahead=0.25, clock=clock)


async def settle() -> None:
    """Let background reads run to their end."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_key_is_read_once_while_fresh(
    cache: KeyCache, db: FakeDatabase, clock: Clock
) -> None:
    assert await cache.account("h") == ACME
    clock.now += 0.5
    assert await cache.account("h") == ACME
    assert db.reads == 1


async def test_requests_for_an_expired_key_share_one_read(
    cache: KeyCache, db: FakeDatabase
) -> None:
    db.gate = asyncio.Event()
    waiting = [asyncio.create_task(cache.account("h")) for _ in range(50)]
    await settle()
    assert db.reads == 1
    db.gate.set()
    assert await asyncio.gather(*waiting) == [ACME] * 50
    assert db.reads == 1


async def test_a_key_near_its_expiry_is_answered_at_once_and_read_in_the_background(
    cache: KeyCache, db: FakeDatabase, clock: Clock
) -> None:
    await cache.account("h")
    clock.now += 0.8  # 0.2 s left: inside the refresh-ahead window
    db.gate = asyncio.Event()
    assert await asyncio.wait_for(cache.account("h"), 1) == ACME  # not held by the read
    assert await cache.account("h") == ACME  # one background read, not one per request
    await settle()
    assert db.reads == 2
    db.gate.set()
    await settle()
    clock.now += 0.5  # past the first read's expiry, well within the second's
    assert await asyncio.wait_for(cache.account("h"), 1) == ACME
    assert db.reads == 2


async def test_trust_counts_from_when_the_read_started(
    cache: KeyCache, db: FakeDatabase, clock: Clock
) -> None:
    db.gate = asyncio.Event()
    first = asyncio.create_task(cache.account("h"))
    await settle()
    clock.now += 0.6  # the read takes 0.6 s
    db.gate.set()
    assert await first == ACME
    clock.now += 0.5  # 1.1 s after the read started: expired, read again
    db.gate = None
    await cache.account("h")
    assert db.reads == 2


async def test_a_key_revoked_elsewhere_is_refused_once_its_entry_expires(
    cache: KeyCache, db: FakeDatabase, clock: Clock
) -> None:
    await cache.account("h")
    db.answer = None
    clock.now += 1.01
    assert await cache.account("h") is None
    assert await cache.account("h") is None
    assert db.reads == 3  # an unknown key is not cached


async def test_forget_drops_the_entry_and_the_read_under_way(
    cache: KeyCache, db: FakeDatabase, clock: Clock
) -> None:
    """A key revoked in this process is refused at once, even with a read under way
    that started before the revocation and still saw the key."""
    await cache.account("h")
    clock.now += 0.9
    db.gate = asyncio.Event()
    await cache.account("h")  # starts a background read that sees the key active
    await settle()
    db.answer = None  # the revocation commits...
    cache.forget("h")  # ...and the store forgets
    later = asyncio.create_task(cache.account("h"))
    await settle()
    db.gate.set()
    assert await later is None
    await settle()
    assert await cache.account("h") is None  # the old read's answer was not kept


async def test_clear_forgets_every_key(cache: KeyCache, db: FakeDatabase) -> None:
    await cache.account("a")
    await cache.account("b")
    cache.clear()
    db.answer = CHANGED
    assert await cache.account("a") == CHANGED
    assert await cache.account("b") == CHANGED
    assert db.reads == 4


async def test_a_failed_read_reaches_every_waiting_request_and_is_not_kept(
    cache: KeyCache, db: FakeDatabase
) -> None:
    db.gate, db.fail = asyncio.Event(), True
    waiting = [asyncio.create_task(cache.account("h")) for _ in range(3)]
    await settle()
    db.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    db.fail, db.gate = False, None
    assert await cache.account("h") == ACME


async def test_a_failed_background_refresh_leaves_the_entry_to_expire(
    cache: KeyCache, db: FakeDatabase, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    await cache.account("h")
    clock.now += 0.9
    db.fail = True
    assert await cache.account("h") == ACME  # answered from the cache
    await settle()
    assert "refreshing an API key's account failed" in caplog.text
    clock.now += 0.2
    with pytest.raises(OSError):
        await cache.account("h")


async def test_a_caller_that_goes_away_does_not_cancel_the_others_read(
    cache: KeyCache, db: FakeDatabase
) -> None:
    db.gate = asyncio.Event()
    first = asyncio.create_task(cache.account("h"))
    second = asyncio.create_task(cache.account("h"))
    await settle()
    first.cancel()
    await settle()
    db.gate.set()
    assert await second == ACME
    assert db.reads == 1


async def test_the_cache_holds_at_most_size_keys(db: FakeDatabase, clock: Clock) -> None:
    cache = KeyCache(db.read, size=3, clock=clock)
    for digest in "abc":
        await cache.account(digest)
    await cache.account("c")
    assert db.reads == 3
    await cache.account("d")  # a fourth key: the others are dropped
    await cache.account("d")
    assert db.reads == 4
    await cache.account("c")
    assert db.reads == 5
