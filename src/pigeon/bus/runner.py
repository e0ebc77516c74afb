"""The consumer loop every worker shares, whatever the backend.

``ConsumerRunner`` fetches per-partition batches, hands each to a batch
handler, and settles the outcomes. Partitions are processed concurrently;
``per_key`` turns a one-message handler into a batch handler that keeps
per-key order (messages with one key run one after another) while different
keys run concurrently - so one slow recipient never holds up the rest.
Exceptions never kill the loop: our error types decide between retry-later
and dead-letter, anything unexpected is logged and retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from pigeon import metrics, tracing
from pigeon.bus.port import ACK, Batch, Consumer, DeadLetter, Message, Outcome, RetryLater
from pigeon.domain.retry import RetryPolicy
from pigeon.errors import BusError, PermanentError, TransientError
from pigeon.memory import QUIET_TRIM

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[Message]], Awaitable[Sequence[Outcome]]]
MessageHandler = Callable[[Message], Awaitable[Outcome | None]]


def outcome_for_error(exc: Exception, message: Message, policy: RetryPolicy) -> Outcome:
    """Map a handler's exception to what the bus should do with the message."""
    if isinstance(exc, PermanentError):
        return DeadLetter(f"{type(exc).__name__}: {exc}")
    if policy.exhausted(message.attempt):
        return DeadLetter(f"retries exhausted after {message.attempt} attempts: {exc}")
    retry_after = exc.retry_after if isinstance(exc, TransientError) else None
    if not isinstance(exc, TransientError):
        log.error(
            "unexpected error handling a message; will retry",
            exc_info=exc,
            extra={
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "attempt": message.attempt,
            },
        )
    return RetryLater(policy.delay(message.attempt, retry_after), f"{type(exc).__name__}: {exc}")


def per_key(
    handler: MessageHandler, *, concurrency: int = 64, policy: RetryPolicy | None = None
) -> BatchHandler:
    """A batch handler running ``handler`` per message, in key order, keys in parallel."""
    retry_policy = policy or RetryPolicy()
    slots = asyncio.Semaphore(concurrency)

    async def one(message: Message) -> Outcome:
        try:
            return (await handler(message)) or ACK
        except Exception as exc:
            return outcome_for_error(exc, message, retry_policy)

    async def handle(messages: Sequence[Message]) -> Sequence[Outcome]:
        outcomes: list[Outcome] = [ACK] * len(messages)
        by_key: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            by_key.setdefault(message.key, []).append(index)

        async def run_key(indices: list[int]) -> None:
            async with slots:
                for index in indices:
                    outcomes[index] = await one(messages[index])

        await asyncio.gather(*(run_key(indices) for indices in by_key.values()))
        return outcomes

    return handle


class ConsumerRunner:
    """Feeds a consumer's batches to a handler until stopped."""

    def __init__(
        self,
        consumer: Consumer,
        handler: BatchHandler,
        *,
        name: str,
        max_batch: int = 256,
        fetch_timeout: float = 5.0,
        policy: RetryPolicy | None = None,
        together: bool = False,
    ) -> None:
        """``together``: hand the batches of one fetch (several partitions) to the
        handler as one list and settle them in one commit, for handlers that work
        set-based and need no partition to run apart from the others."""
        self.consumer = consumer
        self._together = together
        self.name = name
        # wrapped once, here: a consumer span per traced message (nothing when tracing is off)
        self._handler = (
            tracing.traced_handler(handler, consumer.topic, consumer.group)
            if tracing.ENABLED
            else handler
        )
        self._max_batch = max_batch
        self._fetch_timeout = fetch_timeout
        self._policy = policy or RetryPolicy()
        self._metrics = metrics.consumer(consumer.group, consumer.topic)  # None: metrics off
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.started = asyncio.Event()

    def request_stop(self) -> None:
        """Finish the batches in hand, then leave the group."""
        self._stopping.set()
        self.consumer.interrupt()

    async def run(self) -> None:
        """Join the group and process batches until :meth:`request_stop` or cancel."""
        await self.consumer.start()
        self.started.set()
        log.info(
            "worker consuming",
            extra={
                "worker": self.name,
                "topic": self.consumer.topic,
                "group": self.consumer.group,
            },
        )
        try:
            while not self._stopping.is_set():
                try:
                    batches = await self.consumer.fetch(self._max_batch, self._fetch_timeout)
                except BusError as exc:  # a busy or briefly unreachable bus: wait, go on
                    log.warning(
                        "fetching failed; retrying",
                        extra={
                            "worker": self.name,
                            "group": self.consumer.group,
                            "error": str(exc),
                        },
                    )
                    await asyncio.sleep(0.2)
                    continue
                work = (
                    [self._process_together(batches)]
                    if self._together and len(batches) > 1
                    else [self._process(batch) for batch in batches]
                )
                for job in work:
                    task = asyncio.create_task(job)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            for task in list(self._tasks):  # cancelled: unsettled batches come back later
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await asyncio.shield(self.consumer.stop())

    async def _process_together(self, batches: list[Batch]) -> None:
        messages = [m for batch in batches for m in batch.messages]
        started = time.perf_counter()
        try:
            outcomes = list(await self._handler(messages))
        except Exception as exc:
            outcomes = [outcome_for_error(exc, m, self._policy) for m in messages]
        if self._metrics is not None:
            self._metrics.handled(started, outcomes)
        QUIET_TRIM.worked()
        settled: list[tuple[Batch, Sequence[Outcome]]] = []
        start = 0
        for batch in batches:
            settled.append((batch, outcomes[start : start + len(batch.messages)]))
            start += len(batch.messages)
        try:
            await self.consumer.settle_many(settled)
        except Exception:
            log.exception(
                "could not settle batches; they will be redelivered",
                extra={
                    "worker": self.name,
                    "group": self.consumer.group,
                    "partitions": ",".join(str(b.partition) for b in batches),
                },
            )

    async def _process(self, batch: Batch) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self._handler(batch.messages)
        except Exception as exc:
            outcomes = [outcome_for_error(exc, m, self._policy) for m in batch.messages]
        if self._metrics is not None:
            self._metrics.handled(started, outcomes)
        QUIET_TRIM.worked()
        try:
            await self.consumer.settle(batch, outcomes)
        except Exception:
            log.exception(
                "could not settle a batch; it will be redelivered",
                extra={
                    "worker": self.name,
                    "group": self.consumer.group,
                    "partition": batch.partition,
                },
            )
