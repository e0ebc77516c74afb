"""Twilio-shaped JSON: message resources, error bodies, SIDs and dates."""

from __future__ import annotations

import os
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import orjson
from aiohttp import web

from pigeon.sandbox.store import StoredMessage

API_VERSION = "2010-04-01"
API_PREFIX = f"/{API_VERSION}/Accounts"


def new_message_sid() -> str:
    """A new SMS SID: ``SM`` and 32 hex digits, like Twilio's."""
    return "SM" + os.urandom(16).hex()


def rfc2822(moment: datetime | None) -> str | None:
    """Twilio's date format, e.g. ``Thu, 24 Aug 2023 05:01:45 +0000``."""
    return format_datetime(moment) if moment is not None else None


def message_uri(account_sid: str, sid: str) -> str:
    """The resource path of one message."""
    return f"{API_PREFIX}/{account_sid}/Messages/{sid}.json"


def message_resource(message: StoredMessage) -> dict[str, Any]:
    """The JSON Twilio returns for a Message resource."""
    uri = message_uri(message.account_sid, message.sid)
    return {
        "account_sid": message.account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": rfc2822(message.date_created),
        "date_sent": rfc2822(message.date_sent),
        "date_updated": rfc2822(message.date_updated or message.date_created),
        "direction": "outbound-api",
        "error_code": message.error_code,
        "error_message": message.error_message,
        "from": message.from_,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": str(message.num_segments),
        "price": None,
        "price_unit": "USD",
        "sid": message.sid,
        "status": message.status,
        # Not in Twilio's resource: lets a look-up tell two identical texts apart.
        "status_callback": message.status_callback,
        "subresource_uris": {"media": uri.removesuffix(".json") + "/Media.json"},
        "to": message.to,
        "uri": uri,
    }


def json_response(
    payload: object, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def twilio_error(
    status: int, code: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """An error in Twilio's REST format: ``{code, message, more_info, status}``."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_response(body, status=status, headers=headers)


def problem(status: int, title: str, detail: str, **extra: object) -> web.Response:
    """An ``application/problem+json`` response for the sandbox's own endpoints."""
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    body.update(extra)
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/problem+json"
    )
