"""Shared constants and helpers for the sandbox integration tests (imported by module name)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "sandbox-auth-token"
FROM = "+15005550006"
TO = "+14155550123"


@dataclass
class CallbackReceiver:
    """A tiny webhook server that records every status callback it gets."""

    url: str = ""
    received: asyncio.Queue[tuple[str, dict[str, str]]] = field(default_factory=asyncio.Queue)

    async def next(self) -> tuple[str, dict[str, str]]:
        """The next callback as (X-Twilio-Signature, form parameters), waiting up to 5 s."""
        async with asyncio.timeout(5.0):
            return await self.received.get()
