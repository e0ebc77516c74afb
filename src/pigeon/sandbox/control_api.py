"""The sandbox's own routes: inbox, stats, run-time fault settings and forged callbacks."""

from __future__ import annotations

import orjson
from aiohttp import web

from pigeon.errors import ValidationError
from pigeon.sandbox.callbacks import CallbackDispatcher
from pigeon.sandbox.faults import FaultInjector
from pigeon.sandbox.forgery import forge_callback
from pigeon.sandbox.resources import json_response, problem
from pigeon.sandbox.store import Inbox, SandboxStats


class ControlApi:
    """Handlers for ``/sandbox/...``: what tests and humans use to look inside."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        stats: SandboxStats,
        faults: FaultInjector,
        callbacks: CallbackDispatcher,
    ) -> None:
        self._inbox = inbox
        self._stats = stats
        self._faults = faults
        self._callbacks = callbacks

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        return [
            web.get("/sandbox/health", self.health),
            web.get("/sandbox/messages", self.list_messages),
            web.delete("/sandbox/messages", self.clear_messages),
            web.get("/sandbox/messages/{sid}", self.get_message),
            web.get("/sandbox/stats", self.stats),
            web.get("/sandbox/faults", self.get_faults),
            web.put("/sandbox/faults", self.put_faults),
            web.post("/sandbox/callbacks/forge", self.forge_callback),
        ]

    async def health(self, request: web.Request) -> web.Response:
        """Liveness: answers even when ``down`` is injected."""
        return json_response({"status": "ok"})

    async def list_messages(self, request: web.Request) -> web.Response:
        """Accepted messages, newest last; ``?to=`` filters, ``?limit=`` keeps the newest N."""
        to = request.query.get("to")
        raw_limit = request.query.get("limit")
        limit = None
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
                if limit < 0:
                    raise ValueError
            except ValueError:
                return problem(
                    400,
                    "Invalid query parameter",
                    f"limit must be a whole number >= 0, got {raw_limit!r}",
                    field="limit",
                )
        selected = [m for m in self._inbox if to is None or m.to == to]
        if limit:
            selected = selected[-limit:]
        return json_response({"messages": [m.to_inbox_dict() for m in selected]})

    async def get_message(self, request: web.Request) -> web.Response:
        """One accepted message by SID."""
        sid = request.match_info["sid"]
        message = self._inbox.get(sid)
        if message is None:
            return problem(
                404,
                "Message not found",
                f"no message {sid} in the sandbox inbox (it may have been cleared or evicted)",
            )
        return json_response(message.to_inbox_dict())

    async def clear_messages(self, request: web.Request) -> web.Response:
        """Empty the inbox."""
        return json_response({"deleted": self._inbox.clear()})

    async def stats(self, request: web.Request) -> web.Response:
        """Counters since start."""
        return json_response(self._stats.to_dict(self._inbox))

    async def get_faults(self, request: web.Request) -> web.Response:
        """The fault configuration in force, with ``down_remaining_s``."""
        return json_response(self._faults.state())

    async def put_faults(self, request: web.Request) -> web.Response:
        """Partially update the fault configuration; the whole new one is returned."""
        try:
            changes = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return problem(400, "Invalid JSON", f"the request body is not JSON: {exc}")
        if not isinstance(changes, dict):
            return problem(
                400,
                "Invalid fault configuration",
                'expected a JSON object such as {"error_rate": 0.1}',
            )
        try:
            self._faults.apply(changes)
        except ValidationError as exc:
            return problem(400, "Invalid fault configuration", str(exc), field=exc.field)
        return json_response(self._faults.state())

    async def forge_callback(self, request: web.Request) -> web.Response:
        """Post one status callback built to order (see :mod:`pigeon.sandbox.forgery`)."""
        try:
            spec = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return problem(400, "Invalid JSON", f"the request body is not JSON: {exc}")
        return await forge_callback(spec, inbox=self._inbox, callbacks=self._callbacks)
