"""Callbacks that lie: duplicate, late, out-of-order, unknown and forged ones.

The sender really sends through the sandbox; the callbacks are then posted to
the real API in the worst orders, signed as the provider signs them (the exact
per-notification URL), and the projected status and timeline must stay true.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
from services_testkit import Stack
from test_sms_sender_service import (
    SID,
    TOKEN,
    accept,
    projected_before,
    running,
    wait_status,
)
from tests.support import eventually

from pigeon.bootstrap import Pigeon
from pigeon.domain.notification import NotificationView
from pigeon.providers.signature import SIGNATURE_HEADER, compute_signature
from pigeon.sandbox.server import SandboxServer

PATH = "/v1/providers/twilio/status"


async def _sent(pigeon: Pigeon, sandbox: SandboxServer, body: str) -> tuple[str, str, str]:
    """A notification the sandbox accepted: (notification id, message sid, callback URL)."""
    before = len(sandbox.inbox)
    nid = await accept(pigeon, body=body)
    await eventually(lambda: len(sandbox.inbox) == before + 1)
    message = list(sandbox.inbox)[-1]
    assert message.status_callback is not None
    await _status(pigeon, nid, "sent")
    return nid, message.sid, message.status_callback


async def _view(pigeon: Pigeon, nid: str) -> NotificationView:
    account = await pigeon.store.ensure_account("acme")
    view = await pigeon.store.get_view(account.id, nid)
    assert view is not None
    return view


async def _status(pigeon: Pigeon, nid: str, status: str) -> NotificationView:
    await wait_status(pigeon, nid, status)
    return await _view(pigeon, nid)


async def _callback(
    http: httpx.AsyncClient, url: str, sid: str, status: str, *, token: str = TOKEN
) -> httpx.Response:
    params = {"AccountSid": SID, "MessageSid": sid, "MessageStatus": status, "To": "+14155550123"}
    if status == "undelivered":
        params["ErrorCode"] = "30003"
    query = url.partition("?")[2]
    return await http.post(
        f"{PATH}?{query}" if query else PATH,
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: compute_signature(token, url, params),
        },
    )


async def test_lying_callbacks_never_move_a_status_backwards_or_crash(stack: Stack) -> None:
    async with running(stack) as (pigeon, sandbox):
        # the sandbox's own callbacks go nowhere here: we play the provider
        api_url = "http://127.0.0.1:9"
        transport = httpx.ASGITransport(app=pigeon.api())
        async with httpx.AsyncClient(transport=transport, base_url=api_url) as http:
            # out of order: 'delivered' first, then a late 'sent'
            nid, sid, url = await _sent(pigeon, sandbox, "out of order")
            assert (await _callback(http, url, sid, "delivered")).status_code == 200
            assert (await _callback(http, url, sid, "sent")).status_code == 200
            # duplicates of the final status, and a late contradicting 'undelivered'
            for _ in range(3):
                assert (await _callback(http, url, sid, "delivered")).status_code == 200
            assert (await _callback(http, url, sid, "undelivered")).status_code == 200
            await _status(pigeon, nid, "delivered")
            await projected_before(pigeon, nid)  # every callback's event, contradicting ones too
            view = await _view(pigeon, nid)
            assert view.notification.status.value == "delivered"
            delivered = [e for e in view.timeline if e.status == "delivered"]
            assert len(delivered) == 1

            # an unknown message id: 200 (kept for a late id), nothing changes
            unknown = await _callback(http, url, "SM" + "f" * 32, "delivered")
            assert unknown.status_code == 200

            # forged: a wrong token, or a right signature for another URL
            other, other_sid, other_url = await _sent(pigeon, sandbox, "forged target")
            forged = await _callback(http, other_url, other_sid, "failed", token="not-the-token")
            assert forged.status_code == 403
            assert forged.headers["Content-Type"] == "application/problem+json"
            params_url_mismatch = await http.post(
                PATH + "?n=" + other,
                content=urlencode({"MessageSid": other_sid, "MessageStatus": "failed"}),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    SIGNATURE_HEADER: compute_signature(
                        TOKEN, url, {"MessageSid": other_sid, "MessageStatus": "failed"}
                    ),
                },
            )
            assert params_url_mismatch.status_code == 403  # signed for another URL
            await projected_before(pigeon, other)
            await projected_before(pigeon, nid)
            assert (await _view(pigeon, other)).notification.status.value == "sent"
            assert (await _view(pigeon, nid)).notification.status.value == "delivered"
            health = await http.get("/healthz")
            assert health.status_code == 200
