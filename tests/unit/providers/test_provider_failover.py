"""FailoverProvider: order of preference, breakers, and what it raises when nobody sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from pigeon.errors import (
    CircuitOpen,
    ProviderOutcomeUnknown,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    TransientError,
)
from pigeon.providers.breaker import BreakerState
from pigeon.providers.failover import FailoverProvider
from pigeon.providers.port import (
    ProviderReceipt,
    SmsMessage,
    SmsProvider,
    supports_find_sent,
)

MESSAGE = SmsMessage(to="+14155550123", body="hello")
SINCE = datetime(2024, 5, 1, tzinfo=UTC)


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedProvider:
    """A provider that raises the scripted errors in turn, then succeeds."""

    name: str
    errors: list[Exception] = field(default_factory=list)
    sent: list[SmsMessage] = field(default_factory=list)
    found: ProviderReceipt | None = None
    lookup_error: Exception | None = None
    started: bool = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(message)
        return ProviderReceipt(f"SM-{self.name}-{len(self.sent)}", "queued", 1, self.name)

    async def find_sent(
        self, message: SmsMessage, *, sent_after: datetime
    ) -> ProviderReceipt | None:
        if self.lookup_error is not None:
            raise self.lookup_error
        return self.found


@dataclass
class PlainProvider:
    """A provider without find_sent."""

    name: str

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        return ProviderReceipt("SM1", "queued", 1, self.name)


def _down(name: str, retry_after: float | None = None) -> ProviderUnavailable:
    return ProviderUnavailable(f"{name} failed: HTTP 503", http_status=503, retry_after=retry_after)


def _failover(
    *providers: SmsProvider, clock: FakeClock | None = None, threshold: int = 2
) -> FailoverProvider:
    return FailoverProvider(
        providers,
        failure_threshold=threshold,
        reset_timeout_seconds=30.0,
        clock=clock or FakeClock(),
    )


async def test_a_healthy_primary_sends_everything() -> None:
    """While the first provider works, the others are never called and receipts name it."""
    primary, backup = ScriptedProvider("primary"), ScriptedProvider("backup")
    failover = _failover(primary, backup)
    receipts = [await failover.send(MESSAGE) for _ in range(3)]
    assert {r.provider for r in receipts} == {"primary"}
    assert backup.sent == []


async def test_a_transient_failure_moves_the_same_send_to_the_next_provider() -> None:
    """A 503 from the primary is followed at once by a try on the backup, which sends."""
    primary = ScriptedProvider("primary", errors=[_down("primary")])
    backup = ScriptedProvider("backup")
    receipt = await _failover(primary, backup).send(MESSAGE)
    assert receipt.provider == "backup"
    assert backup.sent == [MESSAGE]


async def test_a_permanent_error_is_raised_without_trying_others() -> None:
    """An invalid number is invalid everywhere: the error propagates and the backup is untouched."""
    primary = ScriptedProvider("primary", errors=[ProviderRejected("21211", code=21211)])
    backup = ScriptedProvider("backup")
    failover = _failover(primary, backup)
    with pytest.raises(ProviderRejected):
        await failover.send(MESSAGE)
    assert backup.sent == []
    assert failover.breaker("primary").consecutive_failures == 0


async def test_an_unknown_outcome_is_raised_without_trying_others() -> None:
    """After a timeout the primary may have sent it: no second provider in the same attempt."""
    primary = ScriptedProvider("primary", errors=[ProviderOutcomeUnknown("timed out")])
    backup = ScriptedProvider("backup")
    failover = _failover(primary, backup)
    with pytest.raises(ProviderOutcomeUnknown):
        await failover.send(MESSAGE)
    assert backup.sent == []
    assert failover.breaker("primary").consecutive_failures == 1


async def test_an_open_breaker_skips_the_provider_until_the_cool_down_ends() -> None:
    """After N failures the primary is skipped, then probed after the cool-down and used again."""
    clock = FakeClock()
    primary = ScriptedProvider("primary", errors=[_down("primary"), _down("primary")])
    backup = ScriptedProvider("backup")
    failover = _failover(primary, backup, clock=clock, threshold=2)

    await failover.send(MESSAGE)
    await failover.send(MESSAGE)
    assert failover.breaker("primary").state is BreakerState.OPEN

    third = await failover.send(MESSAGE)
    assert third.provider == "backup"
    assert len(backup.sent) == 3

    clock.now += 30.0
    probe = await failover.send(MESSAGE)
    assert probe.provider == "primary"
    assert failover.breaker("primary").state is BreakerState.CLOSED


async def test_all_failing_raises_one_transient_error_naming_each_provider() -> None:
    """When every provider fails, the error lists each reason and keeps the last cause."""
    primary = ScriptedProvider("primary", errors=[_down("primary")])
    backup = ScriptedProvider("backup", errors=[_down("backup")])
    with pytest.raises(ProviderUnavailable) as caught:
        await _failover(primary, backup, threshold=5).send(MESSAGE)
    text = str(caught.value)
    assert "primary failed" in text and "backup failed" in text
    assert caught.value.http_status == 503
    assert caught.value.retry_after is None  # breakers closed, no hint: the caller's backoff
    assert not isinstance(caught.value, CircuitOpen)
    assert isinstance(caught.value.__cause__, ProviderUnavailable)


async def test_all_open_raises_with_the_earliest_time_a_breaker_admits() -> None:
    """With every breaker open, retry_after is the shortest remaining cool-down."""
    clock = FakeClock()
    primary = ScriptedProvider("primary", errors=[_down("primary")])
    backup = ScriptedProvider("backup", errors=[_down("backup")])
    failover = _failover(primary, backup, clock=clock, threshold=1)
    with pytest.raises(TransientError):
        await failover.send(MESSAGE)  # both open now, at t=0
    clock.now = 12.0
    with pytest.raises(ProviderUnavailable) as caught:
        await failover.send(MESSAGE)
    assert caught.value.retry_after == pytest.approx(18.0)
    assert "circuit open" in str(caught.value)
    assert isinstance(caught.value, CircuitOpen)  # nobody tried: not an attempt


async def test_all_rate_limited_is_rate_limited_with_the_smallest_retry_after() -> None:
    """When every provider says 429, the caller gets ProviderRateLimited and the earliest hint."""
    primary = ScriptedProvider("primary", errors=[ProviderRateLimited("429", retry_after=5.0)])
    backup = ScriptedProvider("backup", errors=[ProviderRateLimited("429", retry_after=2.0)])
    with pytest.raises(ProviderRateLimited) as caught:
        await _failover(primary, backup, threshold=5).send(MESSAGE)
    assert caught.value.retry_after == 2.0


async def test_the_number_of_providers_per_send_is_bounded() -> None:
    """With max_providers_per_send=1 a failed send does not try the backup."""
    primary = ScriptedProvider("primary", errors=[_down("primary")])
    backup = ScriptedProvider("backup")
    failover = FailoverProvider([primary, backup], max_providers_per_send=1)
    with pytest.raises(ProviderUnavailable):
        await failover.send(MESSAGE)
    assert backup.sent == []


async def test_find_sent_asks_every_provider_that_can_look() -> None:
    """The message may have gone out through any provider: the backup's find counts."""
    found = ProviderReceipt("SM9", "delivered", 1, "backup")
    primary, backup = ScriptedProvider("primary"), ScriptedProvider("backup", found=found)
    failover = _failover(primary, backup, PlainProvider("plain"))
    assert failover.can_reconcile
    assert await failover.find_sent(MESSAGE, sent_after=SINCE) == found


async def test_find_sent_cannot_say_not_sent_when_a_provider_cannot_be_asked() -> None:
    """If one provider's look-up fails and no other found it, the look-up error is raised."""
    primary = ScriptedProvider("primary", lookup_error=_down("primary"))
    backup = ScriptedProvider("backup")
    with pytest.raises(ProviderUnavailable):
        await _failover(primary, backup).find_sent(MESSAGE, sent_after=SINCE)


async def test_find_sent_is_none_when_nobody_has_it() -> None:
    """When every provider answers and none has the message, sending is safe."""
    failover = _failover(ScriptedProvider("primary"), ScriptedProvider("backup"))
    assert await failover.find_sent(MESSAGE, sent_after=SINCE) is None


async def test_start_and_stop_reach_every_provider_and_names_are_checked() -> None:
    """Start and stop fan out; duplicate names and empty lists are refused."""
    primary, backup = ScriptedProvider("primary"), ScriptedProvider("backup")
    failover = _failover(primary, backup)
    await failover.start()
    assert primary.started and backup.started
    await failover.stop()
    assert not primary.started and not backup.started
    assert failover.name == "failover(primary,backup)"
    assert FailoverProvider([PlainProvider("solo")]).name == "solo"
    assert not supports_find_sent(FailoverProvider([PlainProvider("solo")]))
    with pytest.raises(ValueError, match="unique"):
        FailoverProvider([PlainProvider("a"), PlainProvider("a")])
    with pytest.raises(ValueError):
        FailoverProvider([])
