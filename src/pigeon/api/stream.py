"""``GET /v1/notifications/stream``: every status change of an account's notifications, live.

Server-Sent Events read straight from the event log (a :mod:`pigeon.bus.tail`),
so the stream shows what happens as it happens, in log order per notification,
whatever the status projector is doing. Each event's ``id`` is the log position
after it: a client that reconnects with ``Last-Event-ID`` (``EventSource`` does
so by itself) resumes exactly there, with no gap, as long as the log still holds
those entries. If retention compacted them, the stream says so first with an
``event: gap``. Delivery is at least once, like the log's: an event can appear
twice (the same ``event_id``) when a worker repeated it after a crash.

A stream with no news sends a comment every :data:`HEARTBEAT_SECONDS` (proxies
keep it open) and re-checks its API key (a revoked key ends the stream).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import StreamingResponse

from pigeon.api import problems
from pigeon.api.deps import AccountDep, bearer_key, could_be_our_id
from pigeon.bus.tail import Position, Tail, TailRead
from pigeon.domain.events import TOPIC_SMS_REQUESTED, TOPIC_STATUS, Event, decode, format_time
from pigeon.domain.notification import Account
from pigeon.errors import MalformedEvent, ValidationError
from pigeon.store.sql_store import SqlStore

STREAM_PATH = "/v1/notifications/stream"
#: the topics a stream reads, in the order their index appears in a Kafka event id
TOPICS = (TOPIC_SMS_REQUESTED, TOPIC_STATUS)
HEARTBEAT_SECONDS = 15.0
#: how long one read waits for news before the stream checks on its client and key
READ_WAIT_SECONDS = 1.0
#: the ``retry:`` a client waits before reconnecting (milliseconds)
RETRY_MS = 2000
MAX_IDS = 100
_METADATA = "metadata."
_PARAMS = frozenset({"notification_id", "last_event_id"})
#: metadata of notifications a metadata-filtered stream has looked up, per stream
_METADATA_CACHE = 10_000


@dataclass
class StreamFilter:
    """Which events a stream passes: all of the account's, or those matching."""

    notification_ids: frozenset[str] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)


def stream_filter(request: Request) -> StreamFilter:
    """The filter the query asks for; an unknown parameter or a bad value is a 400."""
    ids: set[str] = set()
    metadata: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name == "notification_id":
            if not could_be_our_id(value):
                raise ValidationError(name, "is not a notification id")
            ids.add(value)
        elif name.startswith(_METADATA):
            key = name.removeprefix(_METADATA)
            if not key or len(key) > 64 or not key.isprintable():
                raise ValidationError(name, "a metadata key is 1 to 64 printable characters")
            if key in metadata:
                raise ValidationError(name, "is given twice")
            metadata[key] = value
        elif name not in _PARAMS:
            raise ValidationError(
                name, "is not a filter; use notification_id (repeatable) or metadata.<key>"
            )
    if len(ids) > MAX_IDS:
        raise ValidationError("notification_id", f"at most {MAX_IDS} ids per stream")
    return StreamFilter(frozenset(ids), metadata)


def event_payload(event: Event) -> dict[str, Any]:
    """What a stream (and later a webhook) tells about one event: never the body or number."""
    status = event.status.value if event.status is not None else None
    at = format_time(event.occurred_at)
    return {
        "event_id": event.event_id,
        "type": event.type_name,
        "notification_id": event.notification_id,
        "status": status,
        "at": at,
        "step": {"status": status, "at": at, "detail": event.detail()},
    }


def frame(event_type: str, data: bytes, event_id: str) -> bytes:
    """One SSE event (``data`` is one line of JSON)."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), event_type.encode(), data)


class _Matcher:
    """Decides per event whether a stream passes it (metadata looked up once per notification)."""

    def __init__(self, store: SqlStore, account: Account, filt: StreamFilter) -> None:
        self._store, self._account, self._filter = store, account, filt
        self._metadata: OrderedDict[str, bool] = OrderedDict()

    async def matches(self, event: Event) -> bool:
        if event.account_id != self._account.id:
            return False
        if self._filter.notification_ids and (
            event.notification_id not in self._filter.notification_ids
        ):
            return False
        if not self._filter.metadata:
            return True
        known = self._metadata.get(event.notification_id)
        if known is None:
            view = await self._store.get_view(self._account.id, event.notification_id)
            have = view.notification.metadata if view is not None else {}
            # as the listing matches: the key holds exactly this string
            known = all(have.get(k) == v for k, v in self._filter.metadata.items())
            self._metadata[event.notification_id] = known
            if len(self._metadata) > _METADATA_CACHE:
                self._metadata.popitem(last=False)
        return known


async def _events(
    tail: Tail,
    first: TailRead,
    matcher: _Matcher,
    *,
    still_allowed: Callable[[], Any],
    stopping: asyncio.Event,
    request: Request,
) -> AsyncIterator[bytes]:
    position = first.position.encode(TOPICS)
    try:
        yield b"retry: %d\nid: %s\n\n" % (RETRY_MS, position.encode())
        if first.gap:
            yield frame("gap", orjson.dumps({"detail": first.gap}), position)
        quiet_since = checked = time.monotonic()
        while not stopping.is_set():
            read = await tail.read(READ_WAIT_SECONDS)
            sent = False
            for message, after in read.messages:
                position = after.encode(TOPICS)
                try:
                    event = decode(message.value)
                except MalformedEvent:
                    continue  # the workers dead-letter it; a stream just passes by
                if await matcher.matches(event):
                    yield frame("status", orjson.dumps(event_payload(event)), position)
                    sent = True
            now = time.monotonic()
            if sent:
                quiet_since = now
            elif now - quiet_since >= HEARTBEAT_SECONDS:
                # a comment keeps proxies from closing the stream; the id keeps the
                # client's resume point current even when nothing matched for a while
                position = read.position.encode(TOPICS)
                yield b": keep-alive\nid: %s\n\n" % position.encode()
                quiet_since = now
            if now - checked >= 1.0:
                checked = now
                if await request.is_disconnected() or not await still_allowed():
                    return
    finally:
        await tail.close()


class StatusStreams:
    """Opens the API's live streams and ends them all when the server stops."""

    def __init__(self, open_tail: Callable[[tuple[str, ...]], Tail]) -> None:
        self._open_tail = open_tail
        self.stopping = asyncio.Event()

    def close(self) -> None:
        """End every open stream at its next read (the server is stopping)."""
        self.stopping.set()

    def router(self, store: SqlStore) -> APIRouter:
        router = APIRouter()

        @router.get(
            STREAM_PATH,
            summary="A live stream of status changes (Server-Sent Events)",
            description=(
                "Every status change of this account's notifications as it happens, as "
                "`text/event-stream`: `event: status`, `data:` one JSON object (`event_id`, "
                "`type`, `notification_id`, `status`, `at`, `step`). Filter with "
                "`notification_id` (repeatable, up to 100) and `metadata.<key>=<value>`. "
                "Reconnect with the `Last-Event-ID` header (or `last_event_id`) to resume "
                "after the last event seen, without gaps; without it the stream starts now. "
                "If the log no longer holds what you missed, an `event: gap` comes first. "
                "Delivery is at least once: deduplicate by `event_id`."
            ),
            response_class=StreamingResponse,
            responses={
                200: {"content": {"text/event-stream": {}}, "description": "The stream."},
                **problems.documented(*problems.AUTHENTICATED),
            },
        )
        async def stream_notifications(
            request: Request,
            account: AccountDep,
            last_event_id_header: Annotated[
                str | None,
                Header(alias="Last-Event-ID", description="Resume after this event id."),
            ] = None,
            last_event_id: Annotated[
                str | None,
                Query(max_length=4096, description="Resume after this id (for `curl -N`)."),
            ] = None,
            notification_id: Annotated[
                list[str] | None, Query(description="Only these notifications.")
            ] = None,
        ) -> StreamingResponse:
            del notification_id  # read with the metadata filters, below
            filt = stream_filter(request)
            resume = last_event_id_header or last_event_id
            start = (
                Position.decode(resume, TOPICS, name="Last-Event-ID")
                if resume is not None
                else None
            )
            tail = self._open_tail(TOPICS)
            try:
                first = await tail.open(start)
            except BaseException:
                await tail.close()
                raise
            key = bearer_key(request.scope)

            async def still_allowed() -> bool:
                return await store.authenticate(key) is not None

            body = _events(
                tail,
                first,
                _Matcher(store, account, filt),
                still_allowed=still_allowed,
                stopping=self.stopping,
                request=request,
            )
            return StreamingResponse(
                body,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

        return router
