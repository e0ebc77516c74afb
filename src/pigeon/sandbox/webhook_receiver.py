"""A webhook receiver for trying status webhooks locally (``/sandbox/webhooks/{name}``).

Each ``name`` is an inbox of its own: point an endpoint at
``http://127.0.0.1:8025/sandbox/webhooks/orders``, then read what arrived with
``GET`` on the same path. ``PUT …/faults`` makes it misbehave (fail the next N
requests with a status, answer slowly, or answer 410 Gone); ``DELETE`` forgets
the requests and the faults.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from pigeon.sandbox.resources import json_response, problem

#: requests kept per name (the oldest are forgotten first), and names kept
MAX_REQUESTS = 1000
MAX_NAMES = 1000
MAX_DELAY_MS = 60_000


@dataclass(slots=True)
class ReceiverFaults:
    """How one receiver answers: the next ``fail_next`` requests get ``status``."""

    fail_next: int = 0
    status: int = 500
    delay_ms: int = 0
    gone: bool = False


@dataclass(slots=True)
class Receiver:
    """One named receiver: what it got and how it answers."""

    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_REQUESTS))
    faults: ReceiverFaults = field(default_factory=ReceiverFaults)
    received: int = 0


def _check_faults(changes: object, current: ReceiverFaults) -> ReceiverFaults | str:
    """The faults after a partial update, or why the update is refused."""
    if not isinstance(changes, dict):
        return 'expected a JSON object such as {"fail_next": 3, "status": 500}'
    updated = ReceiverFaults(**asdict(current))
    for name, value in changes.items():
        if name == "gone":
            if not isinstance(value, bool):
                return "gone: must be true or false"
            updated.gone = value
            continue
        bounds = {"fail_next": (0, 1_000_000), "status": (400, 599), "delay_ms": (0, MAX_DELAY_MS)}
        if name not in bounds:
            return f"unknown field {name!r}; use fail_next, status, delay_ms or gone"
        low, high = bounds[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"{name}: must be a whole number from {low} to {high}"
        setattr(updated, name, value)
    return updated


class WebhookReceiver:
    """Handlers for ``/sandbox/webhooks/{name}``."""

    def __init__(self, closing: asyncio.Event | None = None) -> None:
        self._receivers: OrderedDict[str, Receiver] = OrderedDict()
        self._closing = closing or asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        return [
            web.post("/sandbox/webhooks/{name}", self.receive),
            web.get("/sandbox/webhooks/{name}", self.list_received),
            web.delete("/sandbox/webhooks/{name}", self.clear),
            web.put("/sandbox/webhooks/{name}/faults", self.put_faults),
        ]

    def _receiver(self, name: str) -> Receiver:
        receiver = self._receivers.get(name)
        if receiver is None:
            if len(self._receivers) >= MAX_NAMES:
                self._receivers.popitem(last=False)
            receiver = self._receivers[name] = Receiver()
        return receiver

    async def receive(self, request: web.Request) -> web.Response:
        """Record the request, then answer as the faults say (204 when none)."""
        receiver = self._receiver(request.match_info["name"])
        body = await request.read()
        faults = receiver.faults
        if faults.gone:
            answer = 410
        elif faults.fail_next > 0:
            faults.fail_next -= 1
            answer = faults.status
        else:
            answer = 204
        receiver.received += 1
        receiver.requests.append(
            {
                "received_at": datetime.now(UTC).isoformat(),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "answered": answer,
            }
        )
        if faults.delay_ms:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), faults.delay_ms / 1000)
        if answer == 204:
            return web.Response(status=204)
        return problem(answer, "Sandbox fault", f"the sandbox receiver answers {answer} on request")

    async def list_received(self, request: web.Request) -> web.Response:
        """What the receiver got, oldest first, and its faults."""
        receiver = self._receiver(request.match_info["name"])
        return json_response(
            {
                "name": request.match_info["name"],
                "received": receiver.received,
                "requests": list(receiver.requests),
                "faults": asdict(receiver.faults),
            }
        )

    async def clear(self, request: web.Request) -> web.Response:
        """Forget the receiver's requests and faults."""
        self._receivers.pop(request.match_info["name"], None)
        return web.Response(status=204)

    async def put_faults(self, request: web.Request) -> web.Response:
        """Partially update the receiver's faults; the whole new set is returned."""
        try:
            changes = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return problem(400, "Invalid JSON", f"the request body is not JSON: {exc}")
        receiver = self._receiver(request.match_info["name"])
        checked = _check_faults(changes, receiver.faults)
        if isinstance(checked, str):
            return problem(400, "Invalid receiver faults", checked)
        receiver.faults = checked
        return json_response(asdict(checked))
