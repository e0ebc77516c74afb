"""The SMS sender: consumes ``sms.requested`` as group ``sms-sender``.

For each batch: open an attempt per message in the journal (one transaction,
with the ``SmsSending`` events), call the provider concurrently - messages for
one recipient one after another - and record each outcome with its event
(``SmsSent``, ``SmsAttemptFailed`` or ``SmsFailed``) as soon as it is known.
Only then is the batch settled on the bus, so a crash at any point replays
the batch and the journal keeps it from being sent twice once it was sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from pigeon import tracing
from pigeon.bus.port import (
    ACK,
    DeadLetter,
    Message,
    Outcome,
    RetryLater,
    dead_letter_headers,
)
from pigeon.domain.events import (
    TOPIC_SMS_DEAD,
    Event,
    SmsAttemptFailed,
    SmsFailed,
    SmsRequested,
    SmsSending,
    SmsSent,
    SmsWaiting,
    decode,
)
from pigeon.domain.phone import mask_phone
from pigeon.domain.retry import RetryPolicy
from pigeon.errors import (
    CircuitOpen,
    MalformedEvent,
    PermanentError,
    ProviderOutcomeUnknown,
    TransientError,
)
from pigeon.providers.port import (
    ProviderReceipt,
    ReconcilingProvider,
    SmsMessage,
    SmsProvider,
    supports_find_sent,
)
from pigeon.store.attempts import AttemptResult, AttemptStart
from pigeon.store.event_log import RawRecord
from pigeon.store.sql_store import SqlStore
from pigeon.tracing import TRACEPARENT

log = logging.getLogger(__name__)

GROUP = "sms-sender"
#: how far before an unfinished attempt we look for it at the provider
RECONCILE_CLOCK_MARGIN = timedelta(minutes=2)
#: the shortest wait when every provider's circuit is open
CIRCUIT_OPEN_MIN_WAIT = 0.1


@dataclass(frozen=True)
class _Job:
    index: int
    message: Message
    event: SmsRequested
    start: AttemptStart


class SmsSender:
    """Batch handler that delivers requested SMS through a provider."""

    def __init__(
        self,
        store: SqlStore,
        provider: SmsProvider,
        *,
        callback_url: str | None,
        policy: RetryPolicy,
        concurrency: int = 64,
    ) -> None:
        self._store = store
        self._provider = provider
        self._callback_url = callback_url
        self._policy = policy
        self._slots = asyncio.Semaphore(concurrency)

    async def __call__(self, messages: Sequence[Message]) -> Sequence[Outcome]:
        """Handle one partition's batch; returns an outcome per message."""
        outcomes: list[Outcome] = [ACK] * len(messages)
        parsed: list[tuple[int, Message, SmsRequested]] = []
        for index, message in enumerate(messages):
            try:
                event = decode(message.value)
                if not isinstance(event, SmsRequested):
                    raise MalformedEvent(f"expected SmsRequested, got {event.type_name}")
            except MalformedEvent as exc:
                log.error(
                    "dead-lettering a malformed event: %s",
                    exc,
                    extra={
                        "topic": message.topic,
                        "partition": message.partition,
                        "offset": message.offset,
                    },
                )
                outcomes[index] = DeadLetter(f"MalformedEvent: {exc}")
                continue
            if tracing.ENABLED or TRACEPARENT in message.headers:
                event = tracing.consumed(event, message)
            parsed.append((index, message, event))
        if not parsed:
            return outcomes

        by_id = {event.notification_id: event for _, _, event in parsed}

        def sending_events(starts: list[AttemptStart]) -> list[Event]:
            return [
                SmsSending(
                    account_id=by_id[s.notification_id].account_id,
                    notification_id=s.notification_id,
                    attempt=s.attempt,
                    provider=self._provider.name,
                    trace=by_id[s.notification_id].trace,
                )
                for s in starts
                if s.skip_reason is None
            ]

        starts = await self._store.begin_attempts(
            [(event.notification_id, self._provider.name) for _, _, event in parsed],
            sending_events,
        )
        jobs = [
            _Job(index, message, event, start)
            for (index, message, event), start in zip(parsed, starts, strict=True)
        ]
        results: list[tuple[AttemptResult, list[Event], Outcome] | None] = [None] * len(jobs)

        by_key: dict[str, list[int]] = {}
        for position, job in enumerate(jobs):
            by_key.setdefault(job.message.key, []).append(position)

        async def run_key(positions: list[int]) -> None:
            for position in positions:
                # each outcome is journaled as soon as the provider answers
                # (concurrent ones share a commit), not once per batch
                results[position] = await self._attempt(jobs[position])

        await asyncio.gather(*(run_key(p) for p in by_key.values()))

        for job, result in zip(jobs, results, strict=True):
            if result is not None:
                outcomes[job.index] = result[2]
        return outcomes

    async def _attempt(self, job: _Job) -> tuple[AttemptResult, list[Event], Outcome] | None:
        # A slot is held from the provider call until its outcome is journaled, so
        # at most `concurrency` sends are ever unrecorded: the most a kill -9 can
        # make us send twice.
        async with self._slots:
            if job.event.trace is None:
                result = await self._send(job)
            else:  # its events carry the trace on (a "send sms" span's, when tracing)
                result = await tracing.traced_send(
                    self._send,
                    job,
                    job.event.trace,
                    provider=self._provider.name,
                    notification_id=job.event.notification_id,
                )
            if result is None:
                return None
            record, events, outcome = result
            dead: list[RawRecord] = []
            if isinstance(outcome, DeadLetter):
                # written with the failure, in one transaction, rather than by the
                # bus at settle time: a kill in between cannot lose the dead letter
                message = job.message
                dead.append(
                    RawRecord(
                        TOPIC_SMS_DEAD,
                        message.key,
                        message.value,
                        dead_letter_headers(message, outcome.reason, GROUP),
                    )
                )
                outcome = ACK
            await self._store.finish_attempts([record], events, dead)
            return record, events, outcome

    async def _reconcile(
        self, message: SmsMessage, nid: str, since: datetime
    ) -> ProviderReceipt | None:
        """Whether the provider already has ``message`` from an attempt that never finished.

        Raises a TransientError when the provider cannot say (then we wait and
        ask again rather than risk a duplicate).
        """
        if not isinstance(self._provider, ReconcilingProvider) or not supports_find_sent(
            self._provider
        ):
            log.warning(
                "an earlier attempt never finished; sending again", extra={"notification_id": nid}
            )
            return None
        try:
            # margin: the provider's clock may differ from ours
            found = await self._provider.find_sent(
                message, sent_after=since - RECONCILE_CLOCK_MARGIN
            )
        except PermanentError as exc:
            log.warning(
                "an earlier attempt never finished and the provider cannot be asked; "
                "sending again, which may duplicate it",
                extra={"notification_id": nid, "error": str(exc)},
            )
            return None
        if found is not None:
            owner = await self._store.message_owner(found.message_id)
            if owner not in (None, nid):
                # Twilio's list shows no callback URL: an identical SMS to the same
                # number may be another notification's. Never take it for ours
                # (that would lose this one); sending again may duplicate instead.
                log.warning(
                    "the provider's matching message belongs to another notification; "
                    "sending again",
                    extra={
                        "notification_id": nid,
                        "provider_message_id": found.message_id,
                        "owner": owner,
                    },
                )
                return None
        return found

    async def _send(self, job: _Job) -> tuple[AttemptResult, list[Event], Outcome] | None:
        event, start = job.event, job.start
        if start.skip_reason is not None:
            log.info(
                "not sending again: %s",
                start.skip_reason,
                extra={"notification_id": event.notification_id, "account_id": event.account_id},
            )
            return None
        aid, nid = event.account_id, event.notification_id
        provider = self._provider.name
        message = SmsMessage(
            to=event.to,
            body=event.body,
            from_number=event.from_number,
            # one URL per notification: callbacks and reconciliation find it by it
            status_callback=(
                f"{self._callback_url}?n={quote(nid)}"
                + ("" if event.trace is None else tracing.callback_param(event.trace))
                if self._callback_url
                else None
            ),
        )
        try:
            receipt = None
            if start.unfinished_since is not None:
                receipt = await self._reconcile(message, nid, start.unfinished_since)
            reconciled = receipt is not None
            if receipt is None:
                receipt = await self._provider.send(message)
        except CircuitOpen as exc:
            # no provider was tried: not an attempt, so no retry budget spent; the
            # timeline says why it waits and until when; a breaker lets a probe through
            wait = max(exc.retry_after or 0.0, CIRCUIT_OPEN_MIN_WAIT)
            log.info(
                "waiting %.1fs: %s",
                wait,
                exc,
                extra={"notification_id": nid, "account_id": aid},
            )
            waiting = SmsWaiting(
                account_id=aid,
                notification_id=nid,
                reason="every provider's circuit is open",
                wait_seconds=wait,
            )
            return (
                AttemptResult(nid, start.attempt, "skipped", error=str(exc)),
                [waiting],
                RetryLater(wait, str(exc)),
            )
        except TransientError as exc:
            if self._policy.exhausted(start.try_number):
                reason = f"retries exhausted after {start.try_number} attempts: {exc}"
                failed = SmsFailed(
                    account_id=aid,
                    notification_id=nid,
                    reason=reason,
                    error_code=exc.code,
                    attempts=start.try_number,
                )
                return (
                    AttemptResult(
                        event.notification_id, start.attempt, "exhausted", error=str(exc)
                    ),
                    [failed],
                    DeadLetter(reason),
                )
            delay = self._policy.delay(start.try_number, exc.retry_after)
            log.info(
                "attempt %d failed; retrying in %.1fs",
                start.attempt,
                delay,
                extra={
                    "notification_id": nid,
                    "account_id": aid,
                    "provider": provider,
                    "to": mask_phone(event.to),
                    "error": str(exc),
                },
            )
            retry = SmsAttemptFailed(
                account_id=aid,
                notification_id=nid,
                attempt=start.attempt,
                provider=provider,
                error=str(exc),
                error_code=exc.code,
                retry_in_seconds=delay,
            )
            outcome = "unknown" if isinstance(exc, ProviderOutcomeUnknown) else "transient"
            return (
                AttemptResult(event.notification_id, start.attempt, outcome, error=str(exc)),
                [retry],
                RetryLater(delay, str(exc)),
            )
        except PermanentError as exc:
            log.info(
                "rejected by the provider",
                extra={
                    "notification_id": nid,
                    "account_id": aid,
                    "provider": provider,
                    "to": mask_phone(event.to),
                    "error": str(exc),
                },
            )
            failed = SmsFailed(
                account_id=aid,
                notification_id=nid,
                reason=str(exc),
                error_code=exc.code,
                attempts=start.attempt,
            )
            # dead-lettered too: an operator who fixes the cause (an opted-out
            # number re-subscribes, a sender id is registered) can replay it
            return (
                AttemptResult(event.notification_id, start.attempt, "permanent", error=str(exc)),
                [failed],
                DeadLetter(f"rejected by the provider: {exc}"),
            )
        if reconciled:
            log.info(
                "the provider already had it; not sending again",
                extra={
                    "notification_id": nid,
                    "account_id": aid,
                    "provider": receipt.provider,
                    "provider_message_id": receipt.message_id,
                },
            )
        sent = SmsSent(
            account_id=aid,
            notification_id=nid,
            attempt=start.attempt,
            provider=receipt.provider,
            provider_message_id=receipt.message_id,
        )
        return (
            AttemptResult(
                event.notification_id, start.attempt, "sent", provider_message_id=receipt.message_id
            ),
            [sent],
            ACK,
        )
