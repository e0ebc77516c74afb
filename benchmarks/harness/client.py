"""``POST /v1/notifications`` as the load generators send it, to either design.

Each body carries a ``[tag:seq]`` marker, so every message in the sandbox
inbox can be matched to the request that asked for it.
"""

from __future__ import annotations

import itertools
import random
import re
from types import TracebackType

import aiohttp
import orjson

from harness.loadgen import CONNECTION_ERROR, TIMED_OUT

AREA_CODES = ("212", "312", "415", "503", "617", "646", "206", "303", "512", "702")
TAG = re.compile(r"\[(\w+):(\d+)\]")


def recipients(count: int = 2000, seed: int = 7) -> list[str]:
    """Valid, varied US numbers in E.164 (all pass libphonenumber's validation)."""
    rng = random.Random(seed)
    return [
        f"+1{rng.choice(AREA_CODES)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        for _ in range(count)
    ]


def parse_tag(body: str) -> tuple[str, int] | None:
    """The ``(tag, seq)`` marker of a message body, if it has one."""
    match = TAG.search(body)
    return (match[1], int(match[2])) if match else None


class Requests:
    """Bodies for ``POST /v1/notifications``: varied recipients, numbered bodies."""

    def __init__(self, api_url: str, api_key: str, tag: str) -> None:
        self.url = f"{api_url}/v1/notifications"
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.tag = tag
        self._numbers = recipients()
        self._seq = itertools.count()

    def body(self, seq: int) -> bytes:
        """The JSON body of request ``seq`` (the same for the same ``seq``)."""
        return orjson.dumps(
            {
                "channel": "sms",
                "to": self._numbers[seq % len(self._numbers)],
                "body": f"Your Pigeon code is {seq % 1000000:06d} [{self.tag}:{seq}]",
            }
        )

    def next_body(self) -> tuple[int, bytes]:
        """The next request's sequence number and JSON body."""
        seq = next(self._seq)
        return seq, self.body(seq)


def connector(limit: int) -> aiohttp.TCPConnector:
    """One shared keep-alive pool for every request of a run."""
    return aiohttp.TCPConnector(limit=limit, force_close=False, ttl_dns_cache=None)


async def post_one(session: aiohttp.ClientSession, requests: Requests, data: bytes) -> int:
    """POST one notification; returns the status, or a pseudo status when none came back."""
    try:
        async with session.post(requests.url, data=data, headers=requests.headers) as response:
            await response.read()
            return response.status
    except TimeoutError:
        return TIMED_OUT
    except aiohttp.ClientError:
        return CONNECTION_ERROR


class NotificationClient:
    """Sends request ``seq`` of a run over one keep-alive pool (``async with`` it)."""

    def __init__(
        self, requests: Requests, *, timeout_seconds: float = 30.0, connections: int = 1024
    ) -> None:
        self.requests = requests
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NotificationClient:
        self._session = aiohttp.ClientSession(
            connector=connector(self._connections), timeout=self._timeout
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, seq: int) -> int:
        """POST request ``seq``; its status code (or a pseudo status)."""
        if self._session is None:
            raise RuntimeError("use 'async with NotificationClient(...)' before send()")
        return await post_one(self._session, self.requests, self.requests.body(seq))
