"""Running the sandbox: :class:`SandboxServer` for tests, :func:`run_sandbox` for the CLI."""

from __future__ import annotations

import asyncio
import logging
import socket

from aiohttp import web

from pigeon.sandbox.app import SandboxState, build_app
from pigeon.sandbox.callbacks import CallbackDispatcher
from pigeon.sandbox.faults import FaultConfig, FaultInjector
from pigeon.sandbox.store import DEFAULT_CAPACITY, Inbox, SandboxStats

log = logging.getLogger(__name__)


class SandboxServer:
    """A Twilio-compatible fake SMS provider listening on ``host:port``.

    ``port=0`` binds a free port; :attr:`url` gives the real one after :meth:`start`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_sid: str,
        auth_token: str,
        faults: FaultConfig | None = None,
        callback_delay_seconds: float = 0.0,
        seed: int | None = None,
        inbox_capacity: int = DEFAULT_CAPACITY,
        sock: socket.socket | None = None,
    ) -> None:
        """``sock``: an already listening socket to serve on (``host``/``port`` unused)."""
        self._host = host
        self._port = port
        self._sock = sock
        self.stats = SandboxStats()
        self.inbox = Inbox(inbox_capacity)
        self.faults = FaultInjector(faults, seed=seed)
        self.callbacks = CallbackDispatcher(
            account_sid=account_sid,
            auth_token=auth_token,
            stats=self.stats,
            delay_seconds=callback_delay_seconds,
        )
        self._state = SandboxState(
            account_sid=account_sid,
            auth_token=auth_token,
            inbox=self.inbox,
            stats=self.stats,
            faults=self.faults,
            callbacks=self.callbacks,
        )
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; only known once started."""
        if self._url is None:
            raise RuntimeError("SandboxServer.url is known only after await server.start()")
        return self._url

    async def start(self) -> None:
        """Bind and start serving."""
        if self._runner is not None:
            return
        self._state.closing.clear()
        await self.callbacks.start()
        runner = web.AppRunner(build_app(self._state), access_log=None, handle_signals=False)
        await runner.setup()
        site: web.BaseSite = (
            web.SockSite(runner, self._sock)
            if self._sock is not None
            else web.TCPSite(runner, self._host, self._port, backlog=1024)
        )
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            await self.callbacks.stop()
            raise
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self._url = f"http://{host}:{port}"
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving and cancel pending callbacks (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self._state.closing.set()  # requests held by a "timeout" fault let go now
            await runner.cleanup()
            await self.callbacks.stop()

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start, then serve until the task is cancelled; always stops cleanly."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


async def run_sandbox(
    host: str,
    port: int,
    account_sid: str,
    auth_token: str,
    faults: FaultConfig | None = None,
    *,
    callback_delay_seconds: float = 0.0,
    seed: int | None = None,
) -> None:
    """Run a sandbox until cancelled (what ``pigeon sandbox`` calls)."""
    server = SandboxServer(
        host=host,
        port=port,
        account_sid=account_sid,
        auth_token=auth_token,
        faults=faults,
        callback_delay_seconds=callback_delay_seconds,
        seed=seed,
    )
    await server.start()
    log.info(
        "SMS sandbox listening on %s (account %s); inbox at %s/sandbox/messages",
        server.url,
        account_sid,
        server.url,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
