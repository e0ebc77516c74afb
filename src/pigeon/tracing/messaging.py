"""Tracing on the bus: consumer spans, the provider call, the callback URL, the relay."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pigeon import tracing
from pigeon.domain.events import SmsAttemptFailed, SmsFailed

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from pigeon.bus.port import Message as BusMessage
    from pigeon.bus.port import Outcome
    from pigeon.domain.events import Event

T = TypeVar("T")
R = TypeVar("R")
E = TypeVar("E", bound="Event")


class _Record(Protocol):
    """A record the outbox relay produces (``pigeon.bus.kafka_wire.OutRecord``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


RecordT = TypeVar("RecordT", bound=_Record)

#: the consumer spans of the batch being handled, by ``id(message)`` (see traced_handler)
_consuming: ContextVar[Mapping[int, Context]] = ContextVar("pigeon_consuming", default={})  # noqa: B039  # never mutated


def traced_handler(
    handler: Callable[[Sequence[BusMessage]], Awaitable[Sequence[Outcome]]],
    topic: str,
    group: str,
) -> Callable[[Sequence[BusMessage]], Awaitable[Sequence[Outcome]]]:
    """``handler`` with a consumer span per traced message of each batch.

    Wrapped once, when the runner is made (tracing on): a span ``process <topic>``,
    child of the context in the message's headers, covers the batch's handling;
    the handler finds it with :func:`consumed`. A message without a
    ``traceparent`` gets no span: Pigeon continues traces, it does not start them
    for events of unknown origin.
    """

    async def handle(messages: Sequence[BusMessage]) -> Sequence[Outcome]:
        tracer = tracing._tracer
        if tracer is None:
            return await handler(messages)
        from opentelemetry.trace import set_span_in_context

        kind = tracing.span_kind("CONSUMER")
        spans: list[tuple[int, Span]] = []
        contexts: dict[int, Context] = {}
        for index, message in enumerate(messages):
            if tracing.TRACEPARENT not in message.headers:
                continue
            span = tracer.start_span(
                f"process {topic}",
                context=tracing.extract(message.headers),
                kind=kind,
                attributes={
                    "messaging.system": "pigeon",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": topic,
                    "messaging.consumer.group.name": group,
                    "messaging.destination.partition.id": str(message.partition),
                    "messaging.message.id": f"{message.topic}:{message.partition}:{message.offset}",
                    "pigeon.event_type": message.headers.get("pigeon-event-type", ""),
                    "pigeon.attempt": message.attempt,
                },
            )
            spans.append((index, span))
            contexts[id(message)] = set_span_in_context(span)
        if not spans:
            return await handler(messages)
        token = _consuming.set(contexts)
        try:
            outcomes = await handler(messages)
        except BaseException as exc:
            for _, span in spans:
                span.record_exception(exc)
                tracing.mark_error(span, f"{type(exc).__name__}: {exc}")
                span.end()
            raise
        finally:
            _consuming.reset(token)
        for index, span in spans:
            _settled(span, outcomes[index])
            span.end()
        return outcomes

    return handle


def _settled(span: Span, outcome: Outcome) -> None:
    from pigeon.bus.port import DeadLetter, RetryLater

    if isinstance(outcome, DeadLetter):
        span.set_attribute("pigeon.outcome", "dead-letter")
        tracing.mark_error(span, outcome.reason)
    elif isinstance(outcome, RetryLater):
        span.set_attribute("pigeon.outcome", "retry")
        span.set_attribute("pigeon.retry_in_seconds", outcome.delay_seconds)
    else:
        span.set_attribute("pigeon.outcome", "ack")


def consumed(event: E, message: BusMessage) -> E:
    """``event`` (decoded from ``message``) carrying the trace it continues.

    On: the context of ``message``'s consumer span (see :func:`traced_handler`),
    or of its headers outside a traced runner; off: the headers passed through.
    Call it only when tracing is on or the message has a ``traceparent``.
    """
    trace: Mapping[str, str] | None
    context = _consuming.get().get(id(message)) if tracing._tracer is not None else None
    if context is not None:
        trace = tracing.inject(context)
    else:
        headers = message.headers
        trace = tracing.passthrough(
            headers.get(tracing.TRACEPARENT), headers.get(tracing.TRACESTATE)
        )
    return dataclasses.replace(event, trace=trace) if trace else event


async def traced_send(
    send: Callable[[T], Awaitable[tuple[R, list[Event], Any] | None]],
    job: T,
    trace: Mapping[str, str],
    *,
    provider: str,
    notification_id: str,
) -> tuple[R, list[Event], Any] | None:
    """``send(job)`` (one provider call) in a ``send sms`` span; its events carry the span.

    Off: the events carry ``trace`` (the request's, passed through).
    """
    tracer = tracing._tracer
    if tracer is None:
        result = await send(job)
        if result is None:
            return None
        record, events, outcome = result
        return record, [dataclasses.replace(e, trace=trace) for e in events], outcome
    with tracer.start_as_current_span(
        "send sms",
        context=tracing.extract(trace),
        kind=tracing.span_kind("CLIENT"),
        attributes={"pigeon.provider": provider, "pigeon.notification_id": notification_id},
    ) as span:
        result = await send(job)
        if result is None:
            span.set_attribute("pigeon.outcome", "skipped")
            return None
        record, events, outcome = result
        first = events[0] if events else None
        span.set_attribute("pigeon.outcome", first.type_name if first is not None else "none")
        if isinstance(first, SmsFailed):
            tracing.mark_error(span, first.reason)
        elif isinstance(first, SmsAttemptFailed):
            tracing.mark_error(span, first.error)
        ours = tracing.inject()
        return record, [dataclasses.replace(e, trace=ours) for e in events], outcome


def callback_param(trace: Mapping[str, str]) -> str:
    """What the sender appends to a status-callback URL: ``&traceparent=…``, since a
    provider calls back with its own headers only. (Not ``tracestate``: free text, which
    the provider might re-encode in the URL it signs.)

    On: the current span's (the provider call's); off: ``trace``'s, passed through.
    """
    found = (tracing.inject() if tracing._tracer is not None else trace) or {}
    parent = found.get(tracing.TRACEPARENT)
    return f"&{tracing.TRACEPARENT}={parent}" if parent else ""  # [0-9a-f-] only: nothing to quote


_CALLBACK_PARAM_RE = re.compile(r"[&?]traceparent=[^&]*")


def without_callback_param(url: str) -> str:
    """``url`` without the ``traceparent`` query parameter :func:`callback_param` added
    (each attempt has its own; a look-up of an earlier attempt must not mind it)."""
    return _CALLBACK_PARAM_RE.sub("", url) if tracing.TRACEPARENT in url else url


# -- the outbox relay ------------------------------------------------------------------------
async def traced_publish(
    produce: Callable[[list[RecordT]], Awaitable[None]], records: list[RecordT]
) -> None:
    """``produce(records)`` with a ``publish <topic>`` span per traced record, whose
    context the published record carries instead of the one it was written with."""
    tracer = tracing._tracer
    if tracer is None:
        await produce(records)
        return
    kind = tracing.span_kind("PRODUCER")
    spans: list[Span] = []
    out: list[RecordT] = []
    for record in records:
        headers = record.headers
        if tracing.TRACEPARENT not in headers:
            out.append(record)
            continue
        topic = record.topic
        span = tracer.start_span(
            f"publish {topic}",
            context=tracing.extract(headers),
            kind=kind,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(record.partition),
                "pigeon.event_type": headers.get("pigeon-event-type", ""),
            },
        )
        from opentelemetry.trace import set_span_in_context

        spans.append(span)
        moved = {**headers, **(tracing.inject(set_span_in_context(span)) or {})}
        out.append(dataclasses.replace(record, headers=moved))  # type: ignore[type-var]  # a dataclass
    try:
        await produce(out)
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            tracing.mark_error(span, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for span in spans:
            span.end()
