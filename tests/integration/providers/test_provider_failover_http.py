"""Failover between two real sandboxes over HTTP, built by the factory as production builds it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from providers_testkit import TO, entry
from tests.support import eventually

from pigeon.errors import ProviderOutcomeUnknown, ProviderRejected, ProviderUnavailable
from pigeon.providers.breaker import BreakerState
from pigeon.providers.factory import ProviderSettings, build_sms_provider
from pigeon.providers.failover import FailoverProvider
from pigeon.providers.port import SmsMessage
from pigeon.sandbox import FaultConfig, SandboxServer

MESSAGE = SmsMessage(to=TO, body="Your table is ready")

Build = Callable[..., FailoverProvider]


@pytest.fixture
async def build(primary: SandboxServer, backup: SandboxServer) -> AsyncIterator[Build]:
    """Builds started failover providers over [primary, backup]; stops them afterwards."""
    built: list[FailoverProvider] = []

    def make(**overrides: Any) -> FailoverProvider:
        settings = ProviderSettings(
            [entry("primary", primary), entry("backup", backup)],
            timeout_seconds=2.0,
            breaker_failure_threshold=2,
            breaker_reset_seconds=0.3,
        )
        provider = build_sms_provider(replace(settings, **overrides))
        built.append(provider)
        return provider

    yield make
    for provider in built:
        await provider.stop()


async def test_a_healthy_primary_sends_and_the_receipt_names_it(
    primary: SandboxServer, backup: SandboxServer, build: Build
) -> None:
    """With both up, everything goes through the primary."""
    provider = build()
    await provider.start()
    receipts = [await provider.send(MESSAGE) for _ in range(3)]
    assert {r.provider for r in receipts} == {"primary"}
    assert (len(primary.inbox), len(backup.inbox)) == (3, 0)


async def test_a_down_primary_fails_over_then_comes_back_after_half_open(
    primary: SandboxServer, backup: SandboxServer, build: Build
) -> None:
    """Primary down: the backup sends and the breaker opens; primary up: a probe brings it back."""
    provider = build()
    await provider.start()
    primary.faults.config = FaultConfig(down=True)

    receipts = [await provider.send(MESSAGE) for _ in range(5)]
    assert {r.provider for r in receipts} == {"backup"}
    assert len(backup.inbox) == 5
    # Two failures opened the breaker: the primary was not even asked for the other three.
    assert primary.stats.faults == {"down": 2}
    assert provider.breaker("primary").state is BreakerState.OPEN

    primary.faults.config = FaultConfig()
    await eventually(lambda: provider.breaker("primary").state is BreakerState.HALF_OPEN)
    probe = await provider.send(MESSAGE)
    assert probe.provider == "primary"
    assert provider.breaker("primary").state is BreakerState.CLOSED
    assert (await provider.send(MESSAGE)).provider == "primary"


async def test_a_failed_probe_keeps_traffic_on_the_backup(
    primary: SandboxServer, backup: SandboxServer, build: Build
) -> None:
    """A primary still down at the probe reopens its breaker and the send goes to the backup."""
    provider = build()
    await provider.start()
    primary.faults.config = FaultConfig(error_codes={"20500": 1.0})
    for _ in range(2):
        await provider.send(MESSAGE)
    await eventually(lambda: provider.breaker("primary").state is BreakerState.HALF_OPEN)

    receipt = await provider.send(MESSAGE)

    assert receipt.provider == "backup"
    assert provider.breaker("primary").state is BreakerState.OPEN
    assert primary.stats.faults == {"error_code": 3}


async def test_a_primary_down_for_a_while_is_used_again_by_itself(
    primary: SandboxServer, build: Build
) -> None:
    """down_for_s on the primary: traffic moves to the backup, then returns by itself."""
    provider = build()
    await provider.start()
    primary.faults.config = FaultConfig(down_for_s=0.5)
    assert (await provider.send(MESSAGE)).provider == "backup"

    async def primary_sends() -> bool:
        return (await provider.send(MESSAGE)).provider == "primary"

    await eventually(primary_sends, interval=0.05)  # traffic comes back to the primary


async def test_a_hung_primary_is_not_followed_by_a_second_send_elsewhere(
    primary: SandboxServer, backup: SandboxServer, build: Build
) -> None:
    """A timeout may hide an accepted message: the send fails as unknown, the backup is spared."""
    provider = build(timeout_seconds=0.3)
    await provider.start()
    primary.faults.config = FaultConfig(timeout_rate=1)
    with pytest.raises(ProviderOutcomeUnknown):
        await provider.send(MESSAGE)
    assert len(backup.inbox) == 0


async def test_a_permanent_rejection_is_not_retried_on_the_backup(
    primary: SandboxServer, backup: SandboxServer, build: Build
) -> None:
    """An invalid number (21211) fails at once; the backup never sees it."""
    provider = build()
    await provider.start()
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(SmsMessage(to="+1555", body="x"))
    assert caught.value.code == 21211
    assert backup.stats.rejected_invalid == 0
    assert provider.breaker("primary").state is BreakerState.CLOSED


async def test_everything_down_is_one_transient_error_with_a_retry_time(
    primary: SandboxServer, backup: SandboxServer, build: Build
) -> None:
    """With both down, sends fail transiently; once both breakers are open, retry_after is set."""
    provider = build(breaker_reset_seconds=30.0)
    await provider.start()
    primary.faults.config = backup.faults.config = FaultConfig(down=True)
    for _ in range(2):
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.send(MESSAGE)
    assert "primary" in str(caught.value) and "backup" in str(caught.value)

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.send(MESSAGE)
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 30.0
    assert "circuit open" in str(caught.value)
