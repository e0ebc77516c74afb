"""A real sandbox on 127.0.0.1, the real Twilio adapter pointed at it, and a callback receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from sandbox_testkit import ACCOUNT_SID, AUTH_TOKEN, FROM, CallbackReceiver

from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.sandbox import SandboxServer


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    """A started sandbox on a free port, seeded for reproducible faults."""
    async with SandboxServer(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, seed=1) as server:
        yield server


@pytest.fixture
async def provider(sandbox: SandboxServer) -> AsyncIterator[TwilioSmsProvider]:
    """The production Twilio adapter, talking HTTP to the sandbox."""
    adapter = TwilioSmsProvider(
        base_url=sandbox.url,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        default_from=FROM,
        timeout_seconds=2.0,
    )
    await adapter.start()
    yield adapter
    await adapter.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client for the sandbox's own endpoints."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    """A real HTTP server on 127.0.0.1:0 collecting status callbacks."""
    recorder = CallbackReceiver()

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        await recorder.received.put((request.headers.get("X-Twilio-Signature", ""), params))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/sms-status", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    recorder.url = f"http://{host}:{port}/hooks/sms-status"
    yield recorder
    await runner.cleanup()
