"""The bare-echo baseline E: validates ``SendNotification`` like Pigeon's API, stores nothing.

Its max requests/s on a machine is **E**, the unit of DESIGN §7's cost model:
the ceiling of a Python HTTP ingest (FastAPI + uvicorn, pydantic validation,
the same request body and answer shape) on that machine. Pigeon's figures are
reported as ratios to E measured in the same run.
"""

from __future__ import annotations

import hmac
from typing import Annotated

import orjson
from fastapi import FastAPI, Header
from starlette.responses import Response

from direct.serve import service_app
from pigeon.api.accepting import accepted_answer, new_notification
from pigeon.api.limits import BodySizeLimit
from pigeon.api.schemas import SendNotification
from pigeon.config import Settings
from pigeon.errors import AuthenticationError

ACCOUNT = "echo"


async def _nothing() -> None:
    return None


def create_app(settings: Settings, *, api_key: str) -> FastAPI:
    """``POST /v1/notifications``: authenticate, validate, build the notification, answer 202."""
    app = service_app("Bare-echo baseline", start=_nothing, stop=_nothing)

    @app.post("/v1/notifications", status_code=202)
    async def send_notification(
        request: SendNotification, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip(), api_key):
            raise AuthenticationError("missing or unknown API key ('Authorization: Bearer <key>')")
        body = accepted_answer(new_notification(request, ACCOUNT))
        return Response(orjson.dumps(body), status_code=202, media_type="application/json")

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
