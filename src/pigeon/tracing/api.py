"""Tracing in the API: a server span per request, the accepted events carrying it."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qsl

from pigeon import tracing

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from pigeon.domain.delivery import DeliveryReport
    from pigeon.domain.notification import Notification

T = TypeVar("T")
C = TypeVar("C")


async def traced_accept(
    accept: Callable[[Notification], Awaitable[T]],
    notification: Notification,
    headers: Mapping[bytes, bytes],
) -> T:
    """``accept(notification)``, its request event carrying the request's trace.

    Tracing on: inside a ``store commit`` span, whose context the event carries.
    Off: the caller's ``traceparent`` header, if valid, passed through.
    """
    tracer = tracing._tracer
    if tracer is None:
        trace = tracing.passthrough(headers.get(b"traceparent"), headers.get(b"tracestate"))
        return await accept(
            dataclasses.replace(notification, trace=trace) if trace else notification
        )
    with tracer.start_as_current_span(
        "store commit", attributes={"pigeon.notification_id": notification.id}
    ):
        return await accept(dataclasses.replace(notification, trace=tracing.inject()))


async def traced_accept_batch(
    accept_batch: Callable[[list[tuple[Notification, C]]], Awaitable[T]],
    items: Sequence[tuple[Notification, C]],
    headers: Mapping[bytes, bytes],
) -> T:
    """:func:`traced_accept` for a batch send: every item's event carries the request's trace."""
    tracer = tracing._tracer
    if tracer is None:
        trace = tracing.passthrough(headers.get(b"traceparent"), headers.get(b"tracestate"))
        return await accept_batch([(dataclasses.replace(n, trace=trace), c) for n, c in items])
    with tracer.start_as_current_span("store commit", attributes={"pigeon.batch_size": len(items)}):
        trace = tracing.inject()
        return await accept_batch([(dataclasses.replace(n, trace=trace), c) for n, c in items])


def traced_report(report: DeliveryReport, query: str) -> DeliveryReport:
    """A status callback's report, carrying the callback request's trace.

    On: the current (server) span's context; off: the ``traceparent`` the sender
    put in the callback URL, passed through.
    """
    if tracing._tracer is not None:
        trace = tracing.inject()
    else:
        trace = tracing.passthrough(dict(parse_qsl(query)).get(tracing.TRACEPARENT))
    return dataclasses.replace(report, trace=trace) if trace else report


class TracingMiddleware:
    """Pure ASGI: a server span around every HTTP request, continuing its ``traceparent``.

    Installed only while tracing is on. Providers cannot send headers: on the
    ``query_paths`` (the status-callback route) a ``traceparent`` query parameter,
    which the sender put in the callback URL, stands in for the header.
    """

    def __init__(self, app: ASGIApp, *, query_paths: Iterable[str] = ()) -> None:
        self.app = app
        self._query_paths = frozenset(query_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        tracer = tracing._tracer
        if scope["type"] != "http" or tracer is None:
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier.setdefault(name.decode(), value.decode("latin-1"))
        path: str = scope["path"]
        if tracing.TRACEPARENT not in carrier and path in self._query_paths:
            query = scope.get("query_string", b"").decode("latin-1")
            found = dict(parse_qsl(query)).get(tracing.TRACEPARENT)
            if found:
                carrier[tracing.TRACEPARENT] = found
        method: str = scope["method"]
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with tracer.start_as_current_span(
            f"{method} {path}" if path in _HOT_PATHS else method,
            context=tracing.extract(carrier),
            kind=tracing.span_kind("SERVER"),
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            await self.app(scope, receive, sending)
            route = getattr(scope.get("route"), "path", None)
            if isinstance(route, str):
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                tracing.mark_error(span, f"HTTP {status}")


def instrument(app: FastAPI, *, query_paths: Iterable[str] = ()) -> FastAPI:
    """``app``, with :class:`TracingMiddleware` outermost when tracing is on."""
    if tracing.ENABLED:
        app.add_middleware(TracingMiddleware, query_paths=query_paths)
    return app


#: routes whose path is their name (no ids in it); others are named by their route
_HOT_PATHS = frozenset({"/v1/notifications", "/v1/providers/twilio/status"})
