"""Serving metrics: ``/metrics`` of the API, a worker's own port, and the HTTP middleware."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

from fastapi import FastAPI
from prometheus_client import Histogram, generate_latest, start_http_server
from prometheus_client.core import Metric
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pigeon import metrics
from pigeon.errors import ConfigurationError
from pigeon.metrics.state import StateProbe, state_families
from pigeon.metrics.summary import RecentRates, Snapshot, snapshot, totals

#: label of requests no route matched (kept apart, so a scan of random paths adds no series)
UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: the classic text format, which what generate_latest writes is, and every Prometheus reads
#: (prometheus-client's "latest", 1.0.0, is for UTF-8 names, which we do not use)
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


class _Families:
    """A fixed list of families, in the shape ``generate_latest`` reads."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class MetricsEndpoint:
    """What ``GET /metrics`` answers: this process's metrics (under ``pigeon run``,
    every process's), the deployment's gauges measured now, the last minute's rates."""

    def __init__(self, probe: StateProbe | None = None) -> None:
        self._probe = probe
        self._recent = RecentRates()

    async def families(self) -> list[Metric]:
        """Every family, measured now."""
        state = await self._probe.measure() if self._probe is not None else None
        registry = metrics.registry()
        # under 'pigeon run' this reads every process's files: off the event loop
        found = await asyncio.to_thread(lambda: list(registry.collect())) if registry else []
        if state is not None:
            found.extend(state_families(state))
        found.extend(self._recent.families(totals(found)))
        return found

    async def render(self) -> bytes:
        """The Prometheus text exposition of :meth:`families`."""
        return generate_latest(_Families(await self.families()))

    async def snapshot(self) -> Snapshot:
        """Lag, breaker states, dead letters and rates as Python data (for the console)."""
        return snapshot(await self.families())


class HttpMetrics:
    """Pure ASGI middleware: each request's duration by method, route template and status.

    Outermost, so that it sees the fast path's answers too; the route template
    is the one the router matched, or the path itself for the fast path's
    fixed routes. Each label combination is bound once and kept.
    """

    def __init__(
        self, app: ASGIApp, *, family: Histogram, fixed_paths: Callable[[], frozenset[str]]
    ) -> None:
        self.app = app
        self._family = family
        self._fixed_paths = fixed_paths
        self._fixed: frozenset[str] | None = None
        self._bound: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler is answered 500 by the server

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            key = (scope["method"], self._route(scope), status)
            bound = self._bound.get(key)
            if bound is None:
                bound = self._bind(key)
            bound.observe(time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", UNMATCHED))
        if self._fixed is None:
            self._fixed = self._fixed_paths()
        path: str = scope["path"]
        return path if path in self._fixed else UNMATCHED

    def _bind(self, key: tuple[str, str, int]) -> Any:
        method, route, status = key
        bound = self._family.labels(method if method in _METHODS else "OTHER", route, str(status))
        self._bound[key] = bound
        return bound


def install_metrics(app: FastAPI, endpoint: MetricsEndpoint) -> FastAPI:
    """Serve ``GET /metrics`` on ``app`` (outside its OpenAPI schema) and, while metrics
    are on, time every request; call it after the app's other middleware (outermost).
    Returns ``app``."""
    app.state.metrics = endpoint  # the console reads endpoint.snapshot()

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        # no auth, like every Prometheus target: bind the API to a private address
        return Response(await endpoint.render(), media_type=TEXT_FORMAT)

    families = metrics.current()
    if families is not None:
        app.add_middleware(
            HttpMetrics,
            family=families.http_request_seconds,
            fixed_paths=lambda: frozenset(
                path for r in app.routes if "{" not in (path := getattr(r, "path", "{"))
            ),
        )
    return app


class WorkerMetricsServer:
    """A worker's own metrics endpoint (``PIGEON_METRICS_PORT``): this process's
    metrics at ``/metrics`` over HTTP, served by prometheus-client in a thread."""

    def __init__(self, server: WSGIServer, thread: Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port it listens on (the chosen one when asked for port 0)."""
        return int(self._server.server_address[1])

    @classmethod
    def start(cls, host: str, port: int) -> WorkerMetricsServer:
        """Listen on ``host:port``; a busy port is one clear line naming the setting."""
        registry = metrics.registry()
        if registry is None:
            raise ValueError("metrics are off: call pigeon.metrics.enable() first")
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise ConfigurationError(
                "PIGEON_METRICS_PORT", f"cannot listen on {host}:{port}: {exc.strerror}"
            ) from exc
        return cls(server, thread)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
