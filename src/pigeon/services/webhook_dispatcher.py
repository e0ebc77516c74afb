"""The webhook dispatcher: status events into signed HTTP deliveries, at least once.

Two loops in one worker (``pigeon worker webhook-dispatcher``):

- :class:`WebhookRecorder`, the bus handler of its own consumer group on
  ``notification.status``: writes one delivery row per (endpoint of the event's
  account that wants its type, event), a batch in one transaction. An account
  without endpoints costs one cached look-up a second and no write.
- :class:`WebhookSender`: sends due deliveries, oldest first per (endpoint,
  notification), signed to the Standard Webhooks spec; retries with the retry
  policy (``Retry-After`` honoured), a circuit breaker per endpoint, 410 Gone or
  a long enough run of failures disables the endpoint. Woken by the recorder in
  this process; otherwise it sleeps until the next delivery is due (at most 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import orjson

from pigeon.api.stream import event_payload
from pigeon.bus.port import ACK, DeadLetter, Message, Outcome
from pigeon.domain.events import Event, decode, format_time, utcnow
from pigeon.domain.retry import RetryPolicy
from pigeon.domain.webhooks import PAYLOAD_TYPE, signature_header
from pigeon.errors import MalformedEvent, PigeonError
from pigeon.providers.breaker import CircuitBreaker
from pigeon.store.webhook_rows import AttemptResult, DueDelivery, NewDelivery, Subscriber

log = logging.getLogger(__name__)

GROUP = "webhook-dispatcher"
#: the longest the sender sleeps between looks for due deliveries (other processes'
#: replays and enables do not wake it)
MAX_IDLE_SECONDS = 5.0
#: how long an account's endpoints are trusted without asking the store again
CACHE_SECONDS = 1.0
_CACHE_SIZE = 10_000


class WebhookQueue(Protocol):
    """What the dispatcher needs of the store (see :class:`pigeon.store.webhooks.WebhookStore`)."""

    async def subscribers(self, account_ids: Iterable[str]) -> dict[str, list[Subscriber]]: ...

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> None: ...

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[DueDelivery]: ...

    async def next_due(self) -> datetime | None: ...

    async def finish(
        self, results: Sequence[AttemptResult], now: datetime, disable_after: timedelta
    ) -> list[tuple[str, str]]: ...


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What one HTTP attempt got: a status (None: no answer), an error text, Retry-After."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None


class Poster(Protocol):
    """Sends one webhook request (see :class:`pigeon.services.webhook_http.AiohttpPoster`)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> PostOutcome: ...


def webhook_body(event: Event) -> str:
    """The JSON body of a webhook about ``event``: never the SMS body or the number."""
    return orjson.dumps(
        {
            "type": PAYLOAD_TYPE,
            "timestamp": format_time(event.occurred_at),
            "data": event_payload(event),
        }
    ).decode()


def signed_headers(delivery: DueDelivery, timestamp: int) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt at ``delivery``."""
    return {
        "content-type": "application/json",
        "webhook-id": delivery.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            delivery.keys, delivery.id, timestamp, delivery.payload
        ),
    }


class WebhookRecorder:
    """The bus handler: status events into delivery rows, one transaction per batch."""

    def __init__(
        self,
        queue: WebhookQueue,
        on_new: Callable[[], None],
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._on_new = on_new
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[list[Subscriber], float]] = {}

    async def __call__(self, messages: Sequence[Message]) -> Sequence[Outcome]:
        """Write the deliveries of one batch."""
        outcomes: list[Outcome] = [ACK] * len(messages)
        events: list[Event] = []
        for index, message in enumerate(messages):
            try:
                events.append(decode(message.value))
            except MalformedEvent as exc:
                outcomes[index] = DeadLetter(f"MalformedEvent: {exc}")
        if not events:
            return outcomes
        subscribers = await self._subscribers({e.account_id for e in events})
        rows: list[NewDelivery] = []
        for event in events:
            wanted = [s for s in subscribers[event.account_id] if s.wants(event.type_name)]
            if not wanted:
                continue
            body = webhook_body(event)
            rows.extend(
                NewDelivery(
                    s.endpoint_id, event.event_id, event.notification_id, event.type_name, body
                )
                for s in wanted
            )
        if rows:
            await self._queue.enqueue(rows)
            self._on_new()
        return outcomes

    async def _subscribers(self, accounts: set[str]) -> dict[str, list[Subscriber]]:
        now = self._clock()
        known: dict[str, list[Subscriber]] = {}
        missing: list[str] = []
        for account in accounts:
            cached = self._cache.get(account)
            if cached is not None and cached[1] > now:
                known[account] = cached[0]
            else:
                missing.append(account)
        if missing:
            found = await self._queue.subscribers(missing)
            if len(self._cache) > _CACHE_SIZE:
                self._cache.clear()
            for account in missing:
                known[account] = found.get(account, [])
                self._cache[account] = (known[account], now + self._cache_seconds)
        return known


@dataclass(frozen=True, slots=True)
class SenderSettings:
    """How the sender retries, waits and gives up."""

    policy: RetryPolicy
    disable_after: timedelta
    timeout_seconds: float
    #: attempts in flight at once. Each round of the loop records the attempts that
    #: ended and claims as many new ones, two short transactions, so a round carries
    #: up to this many: at 32 a round trip to a busy PostgreSQL capped one dispatcher
    #: near 600 webhooks/s (200 sends/s with three statuses each fell behind by
    #: seconds); at 128, 200 sends/s arrive within 0.13 s (p50)
    concurrency: int = 128
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 30.0


class WebhookSender:
    """Sends due deliveries until :meth:`request_stop`; see the module docstring."""

    def __init__(self, queue: WebhookQueue, poster: Poster, settings: SenderSettings) -> None:
        self._queue = queue
        self._poster = poster
        self._settings = settings
        # a claim outlives its attempt (which starts at once and ends within the
        # timeout): a delivery is claimed again only once its attempt has surely
        # ended, or its dispatcher has died
        self._lease = timedelta(seconds=settings.timeout_seconds + 5)
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._done: list[AttemptResult] = []
        self._breakers: dict[str, CircuitBreaker] = {}

    def wake(self) -> None:
        """New deliveries were written: look now."""
        self._wake.set()

    def request_stop(self) -> None:
        """Finish the attempts in flight, record them, then return from :meth:`run`."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Claim, send, record; sleep until something is due or new."""
        await self._poster.start()
        try:
            while not self._stopping:
                self._wake.clear()
                delay = await self._step()
                if delay > 0 and not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
            if self._inflight:
                await asyncio.wait(self._inflight, timeout=self._settings.timeout_seconds + 1)
            for task in self._inflight:
                task.cancel()  # still leased: sent again once the lease ends
            await self._flush()
        finally:
            await self._poster.stop()

    async def _step(self) -> float:
        """One round; returns how long to sleep (0: go on at once)."""
        try:
            await self._flush()
            free = self._settings.concurrency - len(self._inflight)
            claimed: list[DueDelivery] = []
            if free > 0:
                claimed = await self._queue.claim_due(utcnow(), free, self._lease)
                for delivery in claimed:
                    task = asyncio.ensure_future(self._attempt(delivery))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                if claimed and len(claimed) == free:
                    return 0.0
            due = await self._queue.next_due()
        except PigeonError as exc:
            log.warning("webhook dispatch failed (tried again in a second): %s", exc)
            return 1.0
        if due is None:
            return MAX_IDLE_SECONDS
        # already due: it came due since the claim (or lost a race with another dispatcher)
        return min(MAX_IDLE_SECONDS, max(0.05, (due - utcnow()).total_seconds()))

    async def _flush(self) -> None:
        if not self._done:
            return
        done, self._done = self._done, []
        try:
            disabled = await self._queue.finish(done, utcnow(), self._settings.disable_after)
        except PigeonError as exc:
            # not recorded: the deliveries stay leased and are sent again after the lease
            log.warning("could not record %d webhook attempt(s): %s", len(done), exc)
            return
        for endpoint_id, reason in disabled:
            log.warning(
                "webhook endpoint %s disabled: %s",
                endpoint_id,
                reason,
                extra={"endpoint_id": endpoint_id},
            )

    def _breaker(self, endpoint_id: str) -> CircuitBreaker:
        breaker = self._breakers.get(endpoint_id)
        if breaker is None:
            breaker = self._breakers[endpoint_id] = CircuitBreaker(
                failure_threshold=self._settings.breaker_failure_threshold,
                reset_timeout_seconds=self._settings.breaker_reset_seconds,
            )
        return breaker

    async def _attempt(self, delivery: DueDelivery) -> None:
        try:
            result = await self._try(delivery)
        except Exception:  # recorded as nothing: sent again after the lease
            log.exception("webhook attempt at %s failed unexpectedly", delivery.id)
            return
        self._done.append(result)
        self._wake.set()

    async def _try(self, delivery: DueDelivery) -> AttemptResult:
        breaker = self._breaker(delivery.endpoint_id)
        admission = breaker.acquire()
        if admission is None:
            later = utcnow() + timedelta(seconds=max(0.5, breaker.retry_in()))
            return AttemptResult(
                delivery.seq, delivery.endpoint_id, False, next_attempt_at=later, counted=False
            )
        headers = signed_headers(delivery, int(time.time()))
        try:
            outcome = await self._poster.post(delivery.url, headers, delivery.payload)
        except BaseException:
            breaker.release(admission)
            raise
        status = outcome.status
        if status is not None and 200 <= status < 300:
            breaker.record_success(admission)
            return AttemptResult(delivery.seq, delivery.endpoint_id, True, status_code=status)
        if status is None or status >= 500 or status == 429:
            breaker.record_failure(admission)
        else:  # it answered: the endpoint is up, the request was refused
            breaker.record_success(admission)
        error = outcome.error or f"HTTP {status}"
        if status == 410:
            return AttemptResult(
                delivery.seq,
                delivery.endpoint_id,
                False,
                status_code=status,
                error=error,
                gone=True,
            )
        attempts = delivery.attempts + 1
        policy = self._settings.policy
        retry_at: datetime | None = (
            None
            if policy.exhausted(attempts)
            else utcnow() + timedelta(seconds=policy.delay(attempts, outcome.retry_after))
        )
        return AttemptResult(
            delivery.seq,
            delivery.endpoint_id,
            False,
            status_code=status,
            error=error,
            next_attempt_at=retry_at,
        )
