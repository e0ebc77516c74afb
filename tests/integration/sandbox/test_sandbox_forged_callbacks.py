"""POST /sandbox/callbacks/forge sends the lying callback a test asks for, once."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from sandbox_testkit import AUTH_TOKEN, TO, CallbackReceiver

from pigeon.providers.port import SmsMessage
from pigeon.providers.signature import is_valid_signature
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.sandbox import SandboxServer


async def _forge(
    http: aiohttp.ClientSession, sandbox: SandboxServer, spec: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{sandbox.url}/sandbox/callbacks/forge", json=spec) as rsp:
        return rsp.status, await rsp.json(content_type=None)


async def test_a_bad_signature_callback_arrives_with_a_signature_that_fails(
    sandbox: SandboxServer, http: aiohttp.ClientSession, receiver: CallbackReceiver
) -> None:
    """kind bad_signature posts a plausible callback whose signature does not validate."""
    status, report = await _forge(http, sandbox, {"url": receiver.url, "kind": "bad_signature"})
    signature, params = await receiver.next()

    assert (status, report["response_status"]) == (200, 204)
    assert signature == report["signature"]
    assert signature
    assert not is_valid_signature(AUTH_TOKEN, receiver.url, params, signature)
    assert params["MessageStatus"] == "delivered"
    assert sandbox.stats.callbacks_forged == 1


async def test_an_unsigned_callback_has_no_signature_header(
    sandbox: SandboxServer, http: aiohttp.ClientSession, receiver: CallbackReceiver
) -> None:
    """kind unsigned posts without X-Twilio-Signature."""
    status, report = await _forge(http, sandbox, {"url": receiver.url, "kind": "unsigned"})
    signature, _ = await receiver.next()
    assert status == 200
    assert (signature, report["signature"]) == ("", None)


async def test_an_unknown_message_callback_is_validly_signed_for_a_sid_never_issued(
    sandbox: SandboxServer,
    provider: TwilioSmsProvider,
    http: aiohttp.ClientSession,
    receiver: CallbackReceiver,
) -> None:
    """kind unknown_message is correctly signed, for a SID that is not in the inbox."""
    real = await provider.send(SmsMessage(to=TO, body="hi"))
    spec = {"url": receiver.url, "kind": "unknown_message", "message_sid": real.message_id}
    status, _ = await _forge(http, sandbox, spec)
    signature, params = await receiver.next()

    assert status == 200
    assert is_valid_signature(AUTH_TOKEN, receiver.url, params, signature)
    assert params["MessageSid"] != real.message_id
    assert sandbox.inbox.get(params["MessageSid"]) is None
    assert params["To"] == TO


async def test_a_valid_late_callback_can_be_sent_for_a_real_message(
    sandbox: SandboxServer,
    provider: TwilioSmsProvider,
    http: aiohttp.ClientSession,
    receiver: CallbackReceiver,
) -> None:
    """kind valid replays any status for an inbox message, correctly signed, with an ErrorCode."""
    real = await provider.send(SmsMessage(to=TO, body="hi"))
    spec = {
        "url": receiver.url,
        "kind": "valid",
        "message_sid": real.message_id,
        "status": "undelivered",
        "error_code": 30005,
    }
    status, _ = await _forge(http, sandbox, spec)
    signature, params = await receiver.next()

    assert status == 200
    assert is_valid_signature(AUTH_TOKEN, receiver.url, params, signature)
    assert (params["MessageSid"], params["MessageStatus"]) == (real.message_id, "undelivered")
    assert params["ErrorCode"] == "30005"


@pytest.mark.parametrize(
    ("spec", "status", "field"),
    [
        ({"kind": "unsigned"}, 400, "url"),
        ({"url": "ftp://x/y"}, 400, "url"),
        ({"url": "http://127.0.0.1:1/cb", "kind": "lies"}, 400, "kind"),
        ({"url": "http://127.0.0.1:1/cb", "status": "teleported"}, 400, "status"),
        ({"url": "http://127.0.0.1:1/cb", "error_code": "30005"}, 400, "error_code"),
        ({"url": "http://127.0.0.1:1/cb", "kind": "valid"}, 400, "message_sid"),
        ({"url": "http://127.0.0.1:1/cb", "message_sid": "SMnope"}, 404, "message_sid"),
        ({"url": "http://127.0.0.1:1/cb", "sid": "SM1"}, 400, "sid"),
    ],
)
async def test_bad_forge_requests_are_refused_naming_the_field(
    sandbox: SandboxServer,
    http: aiohttp.ClientSession,
    spec: dict[str, Any],
    status: int,
    field: str,
) -> None:
    """Each mistake in a forge request is a problem+json naming the field at fault."""
    answered, problem = await _forge(http, sandbox, spec)
    assert (answered, problem["field"]) == (status, field)


async def test_an_unreachable_webhook_is_a_502(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """When the target cannot be reached the forge call says so with 502."""
    async with SandboxServer(account_sid="AC1", auth_token="x") as gone:
        dead = f"{gone.url}/nobody"
    status, problem = await _forge(http, sandbox, {"url": dead})
    assert status == 502
    assert dead in problem["detail"]
