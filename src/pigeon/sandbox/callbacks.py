"""Status callbacks: tell the sender's webhook ``sent``, then ``delivered``, signed.

Each accepted message gets one background task that walks it through its
life. The 201 is never delayed by a callback, a failing webhook never breaks
the server, and all callbacks share kept-alive connections (plain ``http://``
ones through :class:`~pigeon.sandbox.form_post.FormPoster`, which costs a
quarter of aiohttp's CPU per post; others, and forged ones, through aiohttp).

Like Twilio's, the callbacks can lie a little, on request (a
:class:`~pigeon.sandbox.faults.CallbackPlan`): each one posted twice, or the
final status posted before ``sent``. :meth:`CallbackDispatcher.forge` posts
one callback built to order (bad signature, unsigned, unknown message, any
status) for tests of the receiving end.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp

from pigeon.domain.phone import mask_phone
from pigeon.providers.signature import SIGNATURE_HEADER, compute_signature
from pigeon.sandbox.faults import CallbackPlan
from pigeon.sandbox.form_post import FormPoster, FormPostError
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
        self._poster: FormPoster | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_hosts: set[str] = set()

    async def start(self) -> None:
        """Open the shared client session and connection pool."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(limit=100),
        )
        self._poster = FormPoster(limit=100, timeout_seconds=self._timeout)

    async def stop(self) -> None:
        """Cancel callbacks still in flight and close the session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._poster is not None:
            await self._poster.close()
            self._poster = None

    async def drain(self) -> None:
        """Wait until every callback scheduled so far has been delivered or given up on."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def pending(self) -> int:
        """Messages whose life is still being simulated."""
        return len(self._tasks)

    def schedule(
        self, message: StoredMessage, *, fails: bool = False, plan: CallbackPlan | None = None
    ) -> None:
        """Walk ``message`` to ``delivered`` (``undelivered`` if it fails) in the background."""
        plan = plan or CallbackPlan(fails=fails)
        if message.status_callback is None and not self._delay:
            # Nobody is listening and nothing is slowed down: skip the task entirely.
            _mark_sent(message)
            _finish(message, plan.fails)
            return
        task = asyncio.get_running_loop().create_task(self._run(message, plan))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, message: StoredMessage, plan: CallbackPlan) -> None:
        try:
            await self._pause()
            _mark_sent(message)
            if plan.out_of_order:
                # The final status overtakes "sent", as Twilio's callbacks sometimes do.
                await self._pause()
                _finish(message, plan.fails)
                await self._notify(message, message.status, plan)
                await self._notify(message, "sent", plan)
                return
            await self._notify(message, "sent", plan)
            await self._pause()
            _finish(message, plan.fails)
            await self._notify(message, message.status, plan)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug here must cost one callback, never the server.
            log.exception("status callback crashed", extra={"provider_message_id": message.sid})

    async def _pause(self) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)

    async def _notify(self, message: StoredMessage, status: str, plan: CallbackPlan) -> None:
        if message.status_callback is None:
            return
        for _ in range(2 if plan.duplicate else 1):
            await self._post(message, message.status_callback, status)

    def callback_params(self, message: StoredMessage, status: str) -> dict[str, str]:
        """The form Twilio posts for ``message`` reaching ``status``."""
        params = {
            "AccountSid": self._account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_,
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if message.error_code is not None and status in ("undelivered", "failed"):
            params["ErrorCode"] = str(message.error_code)
        return params

    def sign(self, url: str, params: dict[str, str], *, auth_token: str | None = None) -> str:
        """``X-Twilio-Signature`` for ``params`` posted to ``url`` (our token unless given)."""
        return compute_signature(auth_token or self._auth_token, url, params)

    async def forge(self, url: str, params: dict[str, str], signature: str | None) -> int:
        """Post one callback as given, once, and return the webhook's HTTP status.

        Raises :class:`aiohttp.ClientError` or :class:`TimeoutError` when the
        webhook cannot be reached: the caller asked for this one callback.
        """
        session = self._session
        if session is None:
            raise aiohttp.ClientConnectionError("the callback dispatcher is not started")
        headers = {SIGNATURE_HEADER: signature} if signature is not None else {}
        async with session.post(url, data=params, headers=headers) as response:
            await response.read()
            self._stats.callbacks_forged += 1
            return response.status

    async def _post(self, message: StoredMessage, url: str, status: str) -> None:
        params = self.callback_params(message, status)
        headers = {SIGNATURE_HEADER: self.sign(url, params)}
        session, poster = self._session, self._poster
        if session is None or poster is None:
            return
        for attempt in range(1, self._attempts + 1):
            try:
                if poster.handles(url):
                    code = await poster.post(url, params, headers)
                else:
                    async with session.post(url, data=params, headers=headers) as response:
                        await response.read()
                        code = response.status
            except (aiohttp.ClientError, FormPostError, TimeoutError) as exc:
                if attempt < self._attempts:
                    await asyncio.sleep(self._backoff * attempt)
                    continue
                self._failed(url, f"{type(exc).__name__} after {attempt} attempts", message)
                return
            if code < 400:
                self._stats.callbacks_delivered += 1
            else:
                self._failed(url, f"HTTP {code}", message)
            return

    def _failed(self, url: str, reason: str, message: StoredMessage) -> None:
        self._stats.callbacks_failed += 1
        # A broken webhook fails for every message: say so once per host, not thousands of times.
        host = urlsplit(url).netloc
        level = logging.DEBUG if host in self._warned_hosts else logging.WARNING
        self._warned_hosts.add(host)
        log.log(
            level,
            "status callback %r failed: %s",
            message.status,
            reason,
            extra={"provider_message_id": message.sid, "to": mask_phone(message.to), "url": url},
        )


def _mark_sent(message: StoredMessage) -> None:
    now = datetime.now(UTC)
    message.advance("sent", now)
    # Like Twilio, date_sent stays empty while the message is queued.
    message.date_sent = message.date_sent or now


def _finish(message: StoredMessage, fails: bool) -> None:
    now = datetime.now(UTC)
    message.date_sent = message.date_sent or now
    if fails:
        message.error_code = UNDELIVERED_CODE
        message.error_message = UNDELIVERED_MESSAGE
        message.advance("undelivered", now)
    else:
        message.advance("delivered", now)
