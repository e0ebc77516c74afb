"""The console's view of the development sandbox provider, over its ``/sandbox`` routes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from pigeon.errors import ValidationError

#: how long a probe's answer is trusted: a sandbox found, and none found (short: under
#: 'pigeon run' the sandbox's own process may still be starting when the API answers)
PROBE_SECONDS = 30.0
MISS_SECONDS = 2.0
_TIMEOUT = 2.0
#: what a call that reached no sandbox raises (aiohttp: the client is loaded in every
#: Pigeon process already, httpx would add ~10 MB to each of 'pigeon run''s processes)
_UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError)
#: the fault switches the console's form offers, with their kind
RATE_FIELDS = ("error_rate", "delivery_failure_rate", "rate_429", "timeout_rate")
NUMBER_FIELDS = ("latency_ms", "down_for_s")


class SandboxUnavailable(Exception):
    """The sandbox did not answer (it is a page's message, not an error of Pigeon's)."""


class SandboxLink:
    """Finds the sandbox among the provider URLs and talks to it."""

    def __init__(self, candidates: tuple[str, ...]) -> None:
        self._candidates = tuple(u.rstrip("/") for u in candidates if u.startswith("http://"))
        self._found: str | None = None
        self._probed_at = -PROBE_SECONDS

    async def url(self) -> str | None:
        """The sandbox's base URL, or None when no provider is a sandbox (production)."""
        if not self._candidates:
            return None
        now = time.monotonic()
        if now - self._probed_at < (PROBE_SECONDS if self._found else MISS_SECONDS):
            return self._found
        self._probed_at = now
        self._found = None
        async with _session() as client:
            for candidate in self._candidates:
                try:
                    async with client.get(f"{candidate}/sandbox/health") as answer:
                        body = await answer.json(content_type=None)
                    if answer.status == 200 and body.get("status") == "ok":
                        self._found = candidate
                        break
                except (*_UNREACHABLE, ValueError, AttributeError):
                    continue
        return self._found

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = await self.url()
        if url is None:
            raise SandboxUnavailable("no sandbox provider is configured")
        try:
            async with (
                _session() as client,
                client.request(method, f"{url}{path}", **kwargs) as answer,
            ):
                body = await answer.json(content_type=None)
        except _UNREACHABLE as exc:
            self._probed_at = -PROBE_SECONDS  # look again next time
            raise SandboxUnavailable(
                f"the sandbox at {url} does not answer: {exc or type(exc).__name__}"
            ) from exc
        if answer.status == 400:
            raise ValidationError(str(body.get("field") or "faults"), str(body.get("detail")))
        if answer.status >= 300:
            raise SandboxUnavailable(f"the sandbox answered {answer.status}: {body}")
        return body

    async def inbox(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` messages the sandbox accepted, newest first."""
        body = await self._call("GET", "/sandbox/messages", params={"limit": limit})
        return list(reversed(body["messages"]))

    async def faults(self) -> dict[str, Any]:
        """The fault switches in force."""
        state: dict[str, Any] = await self._call("GET", "/sandbox/faults")
        return state

    async def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some fault switches; the sandbox's ``ValidationError`` names a bad one."""
        state: dict[str, Any] = await self._call("PUT", "/sandbox/faults", json=changes)
        return state

    async def clear(self) -> int:
        """Empty the inbox; how many messages went."""
        body = await self._call("DELETE", "/sandbox/messages")
        return int(body["deleted"])


def _session() -> aiohttp.ClientSession:
    """A short-lived client: the console calls the sandbox seldom (no proxy from the
    environment: the sandbox is local)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT), trust_env=False)


def fault_changes(form: dict[str, str]) -> dict[str, Any]:
    """The fault form's values as a ``PUT /sandbox/faults`` body; ValidationError names
    a field that is not a number (the sandbox checks ranges itself)."""
    changes: dict[str, Any] = {"down": form.get("down") == "on"}
    for name in (*RATE_FIELDS, *NUMBER_FIELDS):
        raw = form.get(name, "").strip()
        if name == "down_for_s" and not raw:
            continue  # an action, not a switch: only when asked
        try:
            changes[name] = float(raw) if raw else 0.0
        except ValueError:
            raise ValidationError(name, f"{raw!r} is not a number") from None
    codes: dict[str, float] = {}
    for part in form.get("error_codes", "").replace(";", ",").split(","):
        if not part.strip():
            continue
        code, sep, rate = part.partition("=")
        try:
            if not sep:
                raise ValueError
            codes[code.strip()] = float(rate)
        except ValueError:
            raise ValidationError(
                "error_codes", f"{part.strip()!r} is not code=rate, e.g. 21610=1.0"
            ) from None
    changes["error_codes"] = codes
    return changes
