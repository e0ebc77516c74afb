"""The notification service: validates like Pigeon's API, then calls the SMS service and waits.

It answers ``200`` once the SMS service says the provider took the message,
and an error when the SMS service fails (``502``), cannot be reached (``503``)
or does not answer in time (``504``). Nothing is stored: a failed request is
the caller's to retry, or it is lost.
"""

from __future__ import annotations

import hmac
from typing import Annotated

import aiohttp
import orjson
from fastapi import FastAPI, Header
from starlette.responses import Response

from direct.serve import service_app
from pigeon.api import problems
from pigeon.api.accepting import new_notification
from pigeon.api.limits import BodySizeLimit
from pigeon.api.schemas import SendNotification
from pigeon.config import Settings
from pigeon.domain.events import format_time
from pigeon.errors import AuthenticationError

ACCOUNT = "direct"
#: the SMS service's answer may take the provider's timeout plus a margin
SMS_SERVICE_MARGIN_SECONDS = 5.0


class SmsServiceClient:
    """``POST /sms`` to the SMS service over one keep-alive pool."""

    def __init__(self, sms_url: str, timeout_seconds: float) -> None:
        self._endpoint = f"{sms_url.rstrip('/')}/sms"
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pool."""
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def stop(self) -> None:
        """Close the pool."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, payload: dict[str, str]) -> tuple[int, bytes]:
        """The SMS service's status and body (aiohttp's errors pass through)."""
        if self._session is None:
            raise RuntimeError("SmsServiceClient.start() was not awaited")
        async with self._session.post(
            self._endpoint, data=orjson.dumps(payload), headers={"Content-Type": "application/json"}
        ) as response:
            return response.status, await response.read()


def _authenticate(authorization: str | None, api_key: str) -> None:
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip(), api_key):
        raise AuthenticationError("missing or unknown API key ('Authorization: Bearer <key>')")


def create_app(settings: Settings, *, sms_url: str, api_key: str) -> FastAPI:
    """The notification service's application, calling the SMS service at ``sms_url``."""
    sms = SmsServiceClient(sms_url, settings.provider_timeout_seconds + SMS_SERVICE_MARGIN_SECONDS)
    app = service_app("Direct baseline: notification service", start=sms.start, stop=sms.stop)

    @app.post("/v1/notifications")
    async def send_notification(
        request: SendNotification, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        _authenticate(authorization, api_key)
        notification = new_notification(request, ACCOUNT)
        payload = {"to": notification.to, "body": notification.body}
        if notification.from_number:
            payload["from"] = notification.from_number
        try:
            status, raw = await sms.send(payload)
        except TimeoutError:
            return problems.problem(504, "the SMS service did not answer in time; not sent")
        except aiohttp.ClientError as exc:
            return problems.problem(
                503, f"the SMS service is unreachable ({type(exc).__name__}); not sent"
            )
        if status != 200:
            return problems.problem(502, f"the SMS service failed with HTTP {status}; not sent")
        body = {
            "id": notification.id,
            "status": "sent",
            "channel": notification.channel,
            "to": notification.to,
            "segments": notification.segments,
            "created_at": format_time(notification.created_at),
            "provider_message_id": orjson.loads(raw).get("sid"),
        }
        return Response(orjson.dumps(body), media_type="application/json")

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
