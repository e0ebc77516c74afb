"""What both baseline services share: the app's frame, and serving it like Pigeon's API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from starlette.responses import Response

from pigeon.api import problems


def service_app(
    title: str, *, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> FastAPI:
    """A FastAPI app with Pigeon's problem responses, ``GET /healthz``, and a lifespan.

    ``start`` runs before the first request (open client sessions), ``stop`` after the last.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await start()
        try:
            yield
        finally:
            await stop()

    app = FastAPI(title=title, lifespan=lifespan)
    problems.install(app)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn (uvloop, httptools) until SIGINT/SIGTERM, then drain."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        backlog=2048,
    )
    uvicorn.Server(config).run()
