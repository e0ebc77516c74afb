"""Status callbacks: tell the sender's webhook ``sent``, then ``delivered``, signed.

Each accepted message gets one background task that walks it through its
life. The 201 is never delayed by a callback, a failing webhook never breaks
the server, and all callbacks share one HTTP client session.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp

from pigeon.domain.phone import mask_phone
from pigeon.providers.signature import SIGNATURE_HEADER, compute_signature
from pigeon.sandbox.resources import API_VERSION
from pigeon.sandbox.store import SandboxStats, StoredMessage

log = logging.getLogger(__name__)

UNDELIVERED_CODE = 30003
UNDELIVERED_MESSAGE = "Unreachable destination handset"


class CallbackDispatcher:
    """Advances accepted messages through ``sent`` and a final status, posting callbacks."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        stats: SandboxStats,
        delay_seconds: float = 0.0,
        attempts: int = 3,
        retry_backoff_seconds: float = 0.1,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._stats = stats
        self._delay = delay_seconds
        self._attempts = attempts
        self._backoff = retry_backoff_seconds
        self._timeout = timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_hosts: set[str] = set()

    async def start(self) -> None:
        """Open the shared client session."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(limit=100),
        )

    async def stop(self) -> None:
        """Cancel callbacks still in flight and close the session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self) -> None:
        """Wait until every callback scheduled so far has been delivered or given up on."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def pending(self) -> int:
        """Messages whose life is still being simulated."""
        return len(self._tasks)

    def schedule(self, message: StoredMessage, *, fails: bool) -> None:
        """Walk ``message`` to ``delivered`` (or ``undelivered`` if ``fails``) in the background."""
        if message.status_callback is None and not self._delay:
            # Nobody is listening and nothing is slowed down: skip the task entirely.
            _finish(message, fails)
            return
        task = asyncio.get_running_loop().create_task(self._run(message, fails))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, message: StoredMessage, fails: bool) -> None:
        try:
            for final in (False, True):
                if self._delay:
                    await asyncio.sleep(self._delay)
                if final:
                    _finish(message, fails)
                else:
                    now = datetime.now(UTC)
                    message.advance("sent", now)
                    message.date_sent = message.date_sent or now
                if message.status_callback is not None:
                    await self._post(message, message.status_callback)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug here must cost one callback, never the server.
            log.exception("status callback for %s crashed", message.sid)

    async def _post(self, message: StoredMessage, url: str) -> None:
        params = {
            "AccountSid": self._account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_,
            "MessageSid": message.sid,
            "MessageStatus": message.status,
            "SmsSid": message.sid,
            "SmsStatus": message.status,
            "To": message.to,
        }
        if message.error_code is not None:
            params["ErrorCode"] = str(message.error_code)
        headers = {SIGNATURE_HEADER: compute_signature(self._auth_token, url, params)}
        session = self._session
        if session is None:
            return
        for attempt in range(1, self._attempts + 1):
            try:
                async with session.post(url, data=params, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt < self._attempts:
                    await asyncio.sleep(self._backoff * attempt)
                    continue
                self._failed(url, f"{type(exc).__name__} after {attempt} attempts", message)
                return
            if status < 400:
                self._stats.callbacks_delivered += 1
            else:
                self._failed(url, f"HTTP {status}", message)
            return

    def _failed(self, url: str, reason: str, message: StoredMessage) -> None:
        self._stats.callbacks_failed += 1
        # A broken webhook fails for every message: say so once per host, not thousands of times.
        host = urlsplit(url).netloc
        level = logging.DEBUG if host in self._warned_hosts else logging.WARNING
        self._warned_hosts.add(host)
        log.log(
            level,
            "status callback %r for %s (to %s) to %s failed: %s",
            message.status,
            message.sid,
            mask_phone(message.to),
            url,
            reason,
        )


def _finish(message: StoredMessage, fails: bool) -> None:
    now = datetime.now(UTC)
    message.date_sent = message.date_sent or now
    if fails:
        message.error_code = UNDELIVERED_CODE
        message.error_message = UNDELIVERED_MESSAGE
        message.advance("undelivered", now)
    else:
        message.advance("delivered", now)
