"""The webhook dispatcher's HTTP side, on aiohttp: one POST, its outcome in our terms."""

from __future__ import annotations

import asyncio

import aiohttp

from pigeon import __version__
from pigeon.services.webhook_dispatcher import PostOutcome

#: how much of a refusing receiver's answer the delivery log keeps
_BODY_CHARS = 200
USER_AGENT = f"Pigeon-Webhooks/{__version__}"


class AiohttpPoster:
    """POSTs webhooks with one connection pool; never raises for an endpoint's failure."""

    def __init__(self, *, timeout_seconds: float, max_connections: int = 64) -> None:
        self._timeout = timeout_seconds
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers={"user-agent": USER_AGENT},
                # no cookies from receivers travel to other receivers
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def stop(self) -> None:
        """Close the connection pool."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> PostOutcome:
        """One attempt: the status, or no status and why; never follows redirects."""
        if self._session is None:
            raise RuntimeError("AiohttpPoster.post before start()")
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return PostOutcome(response.status)
                text = (await response.text(errors="replace"))[:_BODY_CHARS]
                error = f"HTTP {response.status}" + (f": {text}" if text else "")
                return PostOutcome(
                    response.status, error, _retry_after(response.headers.get("retry-after"))
                )
        except TimeoutError:
            return PostOutcome(None, f"no answer within {self._timeout:g} s")
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, ValueError, OSError) as exc:
            return PostOutcome(None, f"{type(exc).__name__}: {exc}"[:_BODY_CHARS])


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header given in seconds (an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None
