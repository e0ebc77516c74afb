"""Status callbacks built to order: ``POST /sandbox/callbacks/forge``.

The receiving end of status callbacks must survive callbacks that lie; this
endpoint lets a test send exactly the lie it wants, once, and see the answer.
The request body is a JSON object::

    {"url": "http://127.0.0.1:8000/v1/callbacks/sms/ntf_…",   required, http(s)
     "kind": "bad_signature",          valid | bad_signature | unsigned | unknown_message
     "message_sid": "SM…",             a message in the inbox; required for "valid"
     "status": "delivered",            any Twilio message status; default "delivered"
     "error_code": 30003}              optional ErrorCode parameter

- ``valid``: correctly signed, for an inbox message, with any status: late,
  repeated or out-of-order callbacks on demand;
- ``bad_signature``: signed with the wrong auth token (for the inbox message
  if ``message_sid`` is given, else for a made-up one);
- ``unsigned``: no ``X-Twilio-Signature`` header at all;
- ``unknown_message``: correctly signed, for a SID the sandbox never issued.

The answer says what was posted and what the webhook answered:
``{"kind", "url", "params", "signature", "response_status"}``; ``502`` when
the webhook could not be reached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from pigeon.sandbox.callbacks import CallbackDispatcher
from pigeon.sandbox.resources import json_response, new_message_sid, problem
from pigeon.sandbox.store import Inbox, StoredMessage

KINDS = ("valid", "bad_signature", "unsigned", "unknown_message")
#: Twilio's message statuses (https://www.twilio.com/docs/messaging/api/message-resource).
STATUSES = (
    "accepted",
    "scheduled",
    "canceled",
    "queued",
    "sending",
    "sent",
    "failed",
    "delivered",
    "undelivered",
    "receiving",
    "received",
    "read",
)
_FIELDS = ("url", "kind", "message_sid", "status", "error_code")
_MADE_UP_TO = "+14155550100"
_MADE_UP_FROM = "+15005550006"


@dataclass(frozen=True, slots=True)
class ForgeSpec:
    """A validated forge request."""

    url: str
    kind: str
    status: str
    error_code: int | None
    message: StoredMessage | None


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _invalid(detail: str, field: str) -> _Refused:
    return _Refused(problem(400, "Invalid forged callback", detail, field=field))


def parse_spec(spec: object, inbox: Inbox) -> ForgeSpec:
    """Check a forge request field by field; raises ``_Refused`` with a problem response."""
    if not isinstance(spec, dict):
        raise _invalid(
            'expected a JSON object such as {"url": "http://…", "kind": "bad_signature"}', "body"
        )
    unknown = sorted(set(spec) - set(_FIELDS))
    if unknown:
        raise _invalid(
            f"unknown field(s) {', '.join(unknown)}; expected some of {', '.join(_FIELDS)}",
            unknown[0],
        )
    url = spec.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise _invalid(f"url must be an absolute http(s) URL, got {url!r}", "url")
    kind = spec.get("kind", "bad_signature")
    if kind not in KINDS:
        raise _invalid(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", "kind")
    status = spec.get("status", "delivered")
    if status not in STATUSES:
        raise _invalid(f"status must be one of {', '.join(STATUSES)}, got {status!r}", "status")
    error_code = spec.get("error_code")
    if error_code is not None and (isinstance(error_code, bool) or not isinstance(error_code, int)):
        raise _invalid(f"error_code must be a whole number, got {error_code!r}", "error_code")
    sid = spec.get("message_sid")
    message: StoredMessage | None = None
    if sid is not None:
        message = inbox.get(sid) if isinstance(sid, str) else None
        if message is None:
            raise _Refused(
                problem(
                    404,
                    "Message not found",
                    f"no message {sid!r} in the sandbox inbox to base the callback on",
                    field="message_sid",
                )
            )
    elif kind == "valid":
        raise _invalid(
            "kind 'valid' needs the message_sid of a message in the inbox", "message_sid"
        )
    return ForgeSpec(url, kind, status, error_code, message)


async def forge_callback(
    spec: object, *, inbox: Inbox, callbacks: CallbackDispatcher
) -> web.Response:
    """Validate ``spec``, post the callback it describes, and report what happened."""
    try:
        forged = parse_spec(spec, inbox)
    except _Refused as refused:
        return refused.response
    message = forged.message
    if message is None or forged.kind == "unknown_message":
        message = StoredMessage(
            sid=new_message_sid(),
            account_sid="",
            to=message.to if message is not None else _MADE_UP_TO,
            from_=message.from_ if message is not None else _MADE_UP_FROM,
            body="",
            num_segments=1,
            date_created=datetime.now(UTC),
        )
    params = callbacks.callback_params(message, forged.status)
    if forged.error_code is not None:
        params["ErrorCode"] = str(forged.error_code)
    signature: str | None = None
    if forged.kind == "bad_signature":
        signature = callbacks.sign(forged.url, params, auth_token="forged-" + os.urandom(8).hex())
    elif forged.kind != "unsigned":
        signature = callbacks.sign(forged.url, params)
    try:
        answered = await callbacks.forge(forged.url, params, signature)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return problem(
            502,
            "Callback not delivered",
            f"could not post the forged callback to {forged.url}: {type(exc).__name__}: {exc}",
        )
    return json_response(
        {
            "kind": forged.kind,
            "url": forged.url,
            "params": params,
            "signature": signature,
            "response_status": answered,
        }
    )
