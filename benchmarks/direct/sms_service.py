"""The SMS service: sends one SMS through the provider and answers when the provider did.

The provider is Pigeon's ``TwilioSmsProvider`` configured from the same
``PIGEON_*`` settings as Pigeon's sender (URL, credentials, timeout, and a pool
of ``PIGEON_SENDER_CONCURRENCY`` connections). No retries: a failure goes back
to the caller, which is what a direct call does.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from direct.serve import service_app
from pigeon.api import problems
from pigeon.config import Settings
from pigeon.errors import ProviderRateLimited, ProviderRejected, ProviderUnavailable
from pigeon.providers.port import SmsMessage
from pigeon.providers.twilio import TwilioSmsProvider


class SendSms(BaseModel):
    """``POST /sms``: one validated message from the notification service."""

    model_config = ConfigDict(extra="forbid")

    to: str
    body: str
    from_: str | None = Field(default=None, alias="from")


def create_app(settings: Settings) -> FastAPI:
    """The SMS service's application; the provider session lives as long as the app."""
    provider = TwilioSmsProvider(
        base_url=settings.sms_provider_url,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        default_from=settings.sms_from,
        timeout_seconds=settings.provider_timeout_seconds,
        max_connections=settings.sender_concurrency,
    )
    app = service_app("Direct baseline: SMS service", start=provider.start, stop=provider.stop)

    @app.post("/sms")
    async def send_sms(request: SendSms) -> Response:
        message = SmsMessage(to=request.to, body=request.body, from_number=request.from_)
        try:
            receipt = await provider.send(message)
        except ProviderRateLimited as exc:
            return problems.problem(429, str(exc))
        except ProviderUnavailable as exc:
            return problems.problem(502, str(exc))
        except ProviderRejected as exc:
            return problems.problem(422, str(exc))
        body = {"sid": receipt.message_id, "status": receipt.status, "segments": receipt.segments}
        return Response(orjson.dumps(body), media_type="application/json")

    return app
