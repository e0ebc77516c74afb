"""RetryPolicy: capped exponential backoff with full jitter; Retry-After as a floor."""

from __future__ import annotations

import random

import pytest

from pigeon.domain.retry import RetryPolicy


def _policy(seed: int = 7, **kwargs: float) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("attempt", range(1, 16))
def test_the_delay_stays_within_zero_and_the_capped_exponential_ceiling(attempt: int) -> None:
    """delay(n) is in [0, min(cap, base * 2**(n-1))] for many draws."""
    policy = _policy(seed=attempt, base_seconds=0.5, cap_seconds=60.0)
    ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt) for _ in range(500)]
    assert all(0 <= d <= ceiling for d in delays)


def test_the_delay_is_jittered_over_the_whole_range() -> None:
    """Full jitter: the draws spread across the range, they are not all near the ceiling."""
    policy = _policy(base_seconds=1.0, cap_seconds=300.0)
    delays = [policy.delay(5) for _ in range(1000)]  # ceiling 16s
    assert min(delays) < 2.0
    assert max(delays) > 14.0
    assert len(set(delays)) > 900


def test_the_delay_never_exceeds_the_cap_even_for_huge_attempt_numbers() -> None:
    """Attempt 200 would be astronomically long without the cap."""
    policy = _policy(base_seconds=1.0, cap_seconds=30.0)
    assert all(policy.delay(200) <= 30.0 for _ in range(200))


def test_the_same_seed_gives_the_same_delays() -> None:
    """With a seeded rng the schedule is reproducible."""
    first = _policy(seed=42)
    second = _policy(seed=42)
    assert [first.delay(n) for n in range(1, 10)] == [second.delay(n) for n in range(1, 10)]


def test_the_delay_matches_a_uniform_draw_over_the_ceiling() -> None:
    """Given seed 3 and attempt 4 (ceiling 8s), the delay is exactly rng.uniform(0, 8)."""
    expected = random.Random(3).uniform(0, 8.0)
    assert _policy(seed=3, base_seconds=1.0).delay(4) == expected


def test_retry_after_is_a_floor_for_the_delay() -> None:
    """We never come back sooner than the provider asked."""
    policy = _policy(base_seconds=1.0, cap_seconds=300.0)
    delays = [policy.delay(1, retry_after=30.0) for _ in range(200)]
    assert all(d >= 30.0 for d in delays)
    assert all(d == 30.0 for d in delays)  # the jitter for attempt 1 is at most 1s


def test_a_shorter_retry_after_does_not_shorten_the_backoff() -> None:
    """Retry-After below the jittered delay leaves the jittered delay in place."""
    seeded = _policy(seed=11, base_seconds=1.0, cap_seconds=300.0)
    jittered = _policy(seed=11, base_seconds=1.0, cap_seconds=300.0).delay(10)
    assert jittered > 0.001
    assert seeded.delay(10, retry_after=0.001) == jittered


def test_a_retry_after_beyond_the_cap_is_capped() -> None:
    """A provider asking for an hour gets the cap, not an hour."""
    policy = _policy(base_seconds=1.0, cap_seconds=120.0)
    assert policy.delay(1, retry_after=3600.0) == 120.0


def test_a_zero_retry_after_still_allows_jitter() -> None:
    """Retry-After: 0 does not force an immediate retry below the jitter draw."""
    policy = _policy(seed=5)
    expected = _policy(seed=5).delay(3)
    assert policy.delay(3, retry_after=0.0) == expected


@pytest.mark.parametrize(
    ("attempt", "exhausted"), [(1, False), (2, False), (9, False), (10, True), (11, True)]
)
def test_the_policy_is_exhausted_after_the_last_allowed_attempt(
    attempt: int, exhausted: bool
) -> None:
    """With 10 attempts allowed, attempt 10 is the last one."""
    assert RetryPolicy(max_attempts=10).exhausted(attempt) is exhausted


def test_a_single_attempt_policy_is_exhausted_at_once() -> None:
    """max_attempts=1 means no retry at all."""
    assert RetryPolicy(max_attempts=1).exhausted(1)


def test_policies_compare_by_settings_not_by_their_random_generator() -> None:
    """Two policies with equal settings are equal whatever their rng."""
    assert _policy(seed=1) == _policy(seed=2)
