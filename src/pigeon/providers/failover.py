"""Failover over an ordered list of providers, each behind its own circuit breaker.

A send goes to the first provider whose breaker admits it. What happens next
depends on what the provider said::

    receipt                                -> done; the receipt names that provider
    permanent error (21211, bad credentials) -> raised at once: another provider
                                              would refuse the message too
    ProviderOutcomeUnknown (timeout, lost
    connection, unreadable 2xx)            -> raised at once: the message may be out,
                                              and a second provider would send it twice;
                                              the sender looks it up (find_sent) first
    other transient error (5xx, 429,
    connection refused)                    -> the next admitted provider, same send

When no provider took the message, one :class:`~pigeon.errors.TransientError`
says why for each of them and carries the earliest moment any of them may be
tried again as ``retry_after``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pigeon import metrics
from pigeon.domain.delivery import DeliveryReport
from pigeon.errors import (
    CircuitOpen,
    PermanentError,
    ProviderOutcomeUnknown,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    TransientError,
)
from pigeon.providers.breaker import BreakerState, CircuitBreaker
from pigeon.providers.port import (
    ProviderReceipt,
    ReconcilingProvider,
    SmsMessage,
    SmsProvider,
    StatusFetchingProvider,
    supports_find_sent,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FailoverMember:
    """One provider in the list and the breaker guarding it."""

    provider: SmsProvider
    breaker: CircuitBreaker
    #: its outcomes and breaker state; None while metrics are off
    recorded: metrics.ProviderMetrics | None = None


class FailoverProvider:
    """An :class:`SmsProvider` that spreads over ``providers`` in order of preference.

    ``max_providers_per_send`` bounds how many providers one send may call
    (all of them by default); receipts keep the name of the provider that sent.
    """

    def __init__(
        self,
        providers: Sequence[SmsProvider],
        *,
        name: str | None = None,
        failure_threshold: int = 5,
        reset_timeout_seconds: float = 30.0,
        max_providers_per_send: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise ValueError("FailoverProvider needs at least one provider")
        names = [p.name for p in providers]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique, got {names}")
        self.name = name or (names[0] if len(names) == 1 else "failover(" + ",".join(names) + ")")
        self.members = tuple(
            FailoverMember(
                provider,
                CircuitBreaker(
                    failure_threshold=failure_threshold,
                    reset_timeout_seconds=reset_timeout_seconds,
                    clock=clock,
                ),
                metrics.provider(provider.name),
            )
            for provider in providers
        )
        for member in self.members:
            if member.recorded is not None:
                member.recorded.breaker(member.breaker.state.value)  # the series exists at once
        limit = len(providers) if max_providers_per_send is None else max_providers_per_send
        if limit < 1:
            raise ValueError(f"max_providers_per_send must be at least 1, got {limit}")
        self._limit = limit

    @property
    def can_reconcile(self) -> bool:
        """Whether any member can look messages up (see :func:`supports_find_sent`)."""
        return any(supports_find_sent(m.provider) for m in self.members)

    def breaker(self, provider_name: str) -> CircuitBreaker:
        """The breaker of the provider called ``provider_name`` (for health pages and tests)."""
        for member in self.members:
            if member.provider.name == provider_name:
                return member.breaker
        raise KeyError(provider_name)

    async def start(self) -> None:
        """Start every provider; if one fails to start, stop the ones already started."""
        started: list[SmsProvider] = []
        try:
            for member in self.members:
                await member.provider.start()
                started.append(member.provider)
        except BaseException:
            for provider in reversed(started):
                await provider.stop()
            raise

    async def stop(self) -> None:
        """Stop every provider (idempotent)."""
        for member in reversed(self.members):
            await member.provider.stop()

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        """Send through the first provider that admits and accepts ``message``."""
        failures: list[tuple[FailoverMember, TransientError]] = []
        skipped: list[FailoverMember] = []
        for member in self.members:
            if len(failures) >= self._limit:
                break
            admission = member.breaker.acquire()
            if admission is None:
                skipped.append(member)
                if member.recorded is not None:
                    member.recorded.skipped()
                continue
            before = member.breaker.state
            try:
                receipt = await member.provider.send(message)
            except ProviderOutcomeUnknown as exc:
                member.breaker.record_failure(admission)
                self._log_change(member, before)
                if member.recorded is not None:
                    member.recorded.failed(exc)
                raise
            except TransientError as exc:
                member.breaker.record_failure(admission)
                self._log_change(member, before)
                if member.recorded is not None:
                    member.recorded.failed(exc)
                failures.append((member, exc))
                log.warning(
                    "provider failed; trying the next one",
                    extra={"provider": member.provider.name, "error": str(exc)},
                )
                continue
            except PermanentError as exc:
                member.breaker.record_success(admission)
                self._log_change(member, before)
                if member.recorded is not None:
                    member.recorded.failed(exc)
                raise
            except BaseException:
                member.breaker.release(admission)
                raise
            member.breaker.record_success(admission)
            self._log_change(member, before)
            if member.recorded is not None:
                member.recorded.accepted.inc()
            return receipt
        raise self._exhausted(failures, skipped)

    async def fetch_status(self, message_id: str, provider_name: str) -> DeliveryReport:
        """The report on ``message_id`` of the member called ``provider_name``
        (:class:`~pigeon.providers.port.StatusLookup`)."""
        for member in self.members:
            if member.provider.name == provider_name:
                if not isinstance(member.provider, StatusFetchingProvider):
                    break
                return await member.provider.fetch_status(message_id)
        raise ProviderRejected(f"{self.name}: no provider {provider_name!r} can fetch statuses")

    async def find_sent(
        self, message: SmsMessage, *, sent_after: datetime
    ) -> ProviderReceipt | None:
        """Ask every member that can look messages up; any of them may have sent it.

        A member that cannot be asked right now makes the answer unknown, so
        its error is raised unless another member found the message.
        """
        error: TransientError | None = None
        for member in self.members:
            provider = member.provider
            if not isinstance(provider, ReconcilingProvider) or not supports_find_sent(provider):
                continue
            try:
                receipt = await provider.find_sent(message, sent_after=sent_after)
            except TransientError as exc:
                error = error or exc
                continue
            if receipt is not None:
                return receipt
        if error is not None:
            raise error
        return None

    def _exhausted(
        self, failures: list[tuple[FailoverMember, TransientError]], skipped: list[FailoverMember]
    ) -> TransientError:
        reasons = [str(exc) for _, exc in failures]
        reasons += [
            f"{m.provider.name} skipped: circuit open, next try in {m.breaker.retry_in():.1f}s"
            for m in skipped
        ]
        hints: list[float | None] = []
        for member, exc in failures:
            wait = member.breaker.retry_in()
            hint = exc.retry_after
            hints.append(max(wait, hint) if hint is not None else (wait or None))
        hints += [m.breaker.retry_in() for m in skipped]
        known = [h for h in hints if h is not None]
        # One provider without a hint may work again any moment: then the caller's backoff decides.
        retry_after = min(known) if known and len(known) == len(hints) else None
        text = f"{self.name}: no provider took the message: " + "; ".join(reasons)
        last = failures[-1][1] if failures else None
        code = last.code if last is not None else None
        status = last.http_status if last is not None else None
        if (
            failures
            and not skipped
            and all(isinstance(e, ProviderRateLimited) for _, e in failures)
        ):
            error: TransientError = ProviderRateLimited(
                text, code=code, http_status=status, retry_after=retry_after
            )
        elif not failures:  # nobody was tried: not an attempt at all
            error = CircuitOpen(text, retry_after=retry_after)
        else:
            error = ProviderUnavailable(
                text, code=code, http_status=status, retry_after=retry_after
            )
        error.__cause__ = last
        return error

    def _log_change(self, member: FailoverMember, before: BreakerState) -> None:
        after = member.breaker.state
        if after is before:
            return
        if member.recorded is not None:
            member.recorded.breaker(after.value)
        level = logging.WARNING if after is BreakerState.OPEN else logging.INFO
        log.log(
            level,
            "circuit %s -> %s",
            before.value,
            after.value,
            extra={"provider": member.provider.name},
        )
