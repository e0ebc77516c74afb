"""Provider metrics over HTTP: send latency, outcomes by error class, breaker state, pacing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from providers_testkit import TO, entry

from pigeon import metrics
from pigeon.errors import ProviderUnavailable
from pigeon.providers.factory import ProviderSettings, build_sms_provider
from pigeon.providers.failover import FailoverProvider
from pigeon.providers.port import SmsMessage
from pigeon.sandbox import FaultConfig, SandboxServer

MESSAGE = SmsMessage(to=TO, body="metrics")


def sample(name: str, **labels: str) -> float:
    """A sample of this process's metrics (0 when it does not exist yet)."""
    registry = metrics.registry()
    assert registry is not None
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def failover(
    primary: SandboxServer, backup: SandboxServer
) -> AsyncIterator[FailoverProvider]:
    """primary then backup, as the factory builds them, with metrics on; stopped after."""
    metrics.enable()
    provider = build_sms_provider(
        ProviderSettings(
            [entry("m-primary", primary), entry("m-backup", backup)],
            timeout_seconds=2.0,
            breaker_failure_threshold=2,
            breaker_reset_seconds=60.0,
        )
    )
    await provider.start()
    try:
        yield provider
    finally:
        await provider.stop()


async def test_a_down_provider_counts_its_errors_by_class_and_shows_its_breaker_open(
    primary: SandboxServer, failover: FailoverProvider
) -> None:
    """Primary down: its 503s are counted as ProviderUnavailable, its breaker reads 2 (open)
    once it opens, later sends count as circuit_open, and the backup's as accepted."""
    assert sample("pigeon_circuit_breaker_state", provider="m-primary") == 0  # closed
    accepted = sample("pigeon_provider_sends_total", provider="m-backup", outcome="accepted")
    timed = sample("pigeon_provider_send_duration_seconds_count", provider="m-primary")
    primary.faults.config = FaultConfig(down=True)

    receipts = [await failover.send(MESSAGE) for _ in range(4)]

    assert {r.provider for r in receipts} == {"m-backup"}
    unavailable = ProviderUnavailable.__name__
    assert sample("pigeon_provider_sends_total", provider="m-primary", outcome=unavailable) == 2
    assert sample("pigeon_provider_sends_total", provider="m-primary", outcome="circuit_open") == 2
    assert sample("pigeon_circuit_breaker_state", provider="m-primary") == 2  # open
    assert (
        sample("pigeon_provider_sends_total", provider="m-backup", outcome="accepted")
        == accepted + 4
    )
    # two HTTP calls reached the primary; the skipped ones never timed a call
    assert sample("pigeon_provider_send_duration_seconds_count", provider="m-primary") == timed + 2


async def test_pacing_records_how_long_it_held_a_message(primary: SandboxServer) -> None:
    """At 2 SMS/s with a burst of 1, the second of two sends waits for its token (the
    scenario's own half second), and the wait is observed."""
    metrics.enable()
    provider = build_sms_provider(
        ProviderSettings([entry("m-paced", primary)], pacing_rate_per_second=2, pacing_burst=1)
    )
    await provider.start()
    try:
        held = sample("pigeon_pacing_wait_seconds_count", provider="m-paced")
        await provider.send(MESSAGE)
        await provider.send(MESSAGE)
    finally:
        await provider.stop()
    assert sample("pigeon_pacing_wait_seconds_count", provider="m-paced") == held + 1
    assert sample("pigeon_pacing_wait_seconds_sum", provider="m-paced") > 0
