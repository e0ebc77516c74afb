"""A Python client for Pigeon's HTTP API: :class:`Client` (blocking) and :class:`AsyncClient`.

::

    from pigeon.client import Client

    with Client("http://127.0.0.1:8000", api_key="pk_...") as pigeon:
        accepted = pigeon.send_sms("+14155550123", "Your code is 123456")
        final = pigeon.wait(accepted.id)          # polls until delivered, undelivered or failed
        print(final.status, [step.detail for step in final.timeline])

Both clients take the same arguments and answer with the API's own models
(:mod:`pigeon.api.schemas`), so every field is typed. Every error answer
(``application/problem+json``) is raised as an :class:`ApiError` subclass named
by its status (:class:`Unprocessable`, :class:`NotFound`, ...), carrying the
problem's ``detail`` and field ``errors``.

Retries are safe by construction: every send carries an ``Idempotency-Key``
(a random one unless you give yours), so a send retried after a timeout or a
dropped connection is stored once. ``429`` and ``503`` answers are retried after
their ``Retry-After`` (or an exponential backoff), up to ``max_retries`` times.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from pigeon.api.schemas import (
    BatchAccepted,
    NotificationAccepted,
    NotificationDetail,
    NotificationPage,
    NotificationSummary,
    UsageItem,
)
from pigeon.domain.status import NotificationStatus

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "StreamEvent",
    "StreamGap",
    "Unauthorized",
    "Unprocessable",
]

DEFAULT_URL = "http://127.0.0.1:8000"
#: the environment variables read when no URL or key is given
URL_ENV, KEY_ENV = "PIGEON_URL", "PIGEON_API_KEY"
#: statuses worth retrying as they are (the request was not applied)
RETRY_STATUSES = frozenset({429, 503})
_M = TypeVar("_M", bound=BaseModel)
_USAGE = TypeAdapter(list[UsageItem])


# -- errors -------------------------------------------------------------------
class ApiError(Exception):
    """An error answer of the API, from its problem details (RFC 9457)."""

    def __init__(self, status: int, problem: Mapping[str, Any], response: httpx.Response) -> None:
        self.status = status
        self.problem = dict(problem)
        self.title = str(problem.get("title", ""))
        self.detail = str(problem.get("detail", response.text[:200]))
        #: ``[{"field": ..., "reason": ...}]`` for invalid input, else empty
        self.errors: list[dict[str, str]] = list(problem.get("errors") or [])
        self.response = response
        super().__init__(f"{status} {self.title}: {self.detail}")


class BadRequest(ApiError):
    """400: the request is not what the API reads (not JSON, not an object, ...)."""


class Unauthorized(ApiError):
    """401: no API key, or one the API does not know (or revoked)."""


class Forbidden(ApiError):
    """403: the key may not do this (an admin route)."""


class NotFound(ApiError):
    """404: no such notification in this account (or no such route)."""


class Conflict(ApiError):
    """409: e.g. an idempotency key used before with another body."""


class PayloadTooLarge(ApiError):
    """413: the body is over the API's limit."""


class Unprocessable(ApiError):
    """422: a field is invalid; :attr:`errors` says which and why."""


class RateLimited(ApiError):
    """429: too many requests, still refused after the retries."""


class ServiceUnavailable(ApiError):
    """503: the store or the broker is down, still after the retries."""


class ServerError(ApiError):
    """Any other 5xx."""


_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: RateLimited,
    503: ServiceUnavailable,
}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    kind = _ERRORS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else ApiError
    raise kind(response.status_code, problem, response)


# -- requests, shared by both clients ---------------------------------------------
@dataclass(frozen=True)
class _Call:
    """One API request, built once, sent by either client (and again when retried)."""

    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Retries:
    """How many times, and how long to wait before each retry."""

    max_retries: int
    backoff: float

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before retry ``attempt`` (from 1), or None: do not retry."""
        if attempt > self.max_retries:
            return None
        if response is not None:
            if response.status_code not in RETRY_STATUSES:
                return None
            after = _retry_after(response.headers.get("retry-after"))
            if after is not None:
                return after
        return float(min(self.backoff * 2 ** (attempt - 1), 30.0))


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _sms(
    to: str,
    body: str,
    from_: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    request: dict[str, Any] = {"channel": "sms", "to": to, "body": body}
    if from_ is not None:
        request["from"] = from_
    if metadata is not None:
        request["metadata"] = dict(metadata)
    return request


def _send_call(request: dict[str, Any], idempotency_key: str | None) -> _Call:
    key = idempotency_key if idempotency_key is not None else f"pigeon-py-{uuid.uuid4()}"
    return _Call("POST", "/v1/notifications", json=request, headers={"Idempotency-Key": key})


def _batch_call(items: Sequence[Mapping[str, Any]]) -> _Call:
    return _Call(
        "POST", "/v1/notifications:batch", json={"notifications": [dict(i) for i in items]}
    )


def _list_call(
    *,
    status: NotificationStatus | str | None,
    to: str | None,
    since: datetime | None,
    until: datetime | None,
    metadata: Mapping[str, str] | None,
    limit: int,
    cursor: str | None,
) -> _Call:
    params: list[tuple[str, str]] = [("limit", str(limit))]
    for name, value in (("status", status), ("to", to), ("cursor", cursor)):
        if value is not None:
            params.append((name, str(value)))
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            params.append((name, moment.isoformat()))
    params += [(f"metadata.{key}", value) for key, value in (metadata or {}).items()]
    return _Call("GET", "/v1/notifications", params=params)


def _cancel_call(notification_id: str) -> _Call:
    return _Call("POST", f"/v1/notifications/{quote(notification_id, safe='')}/cancel")


def _usage_call(from_: date, to: date) -> _Call:
    return _Call("GET", "/v1/usage", params=[("from", from_.isoformat()), ("to", to.isoformat())])


def _parse(response: httpx.Response, model: type[_M]) -> _M:
    _raise_for(response)
    return model.model_validate_json(response.content)


def _settings(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    url = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
    key = api_key or os.environ.get(KEY_ENV)
    if not key:
        raise ValueError(f"no API key: pass api_key= or set {KEY_ENV}")
    return url.rstrip("/"), {"Authorization": f"Bearer {key}", "User-Agent": "pigeon-python"}


def _final(view: NotificationDetail) -> bool:
    return view.status.is_final


@dataclass(frozen=True)
class StreamEvent:
    """One event of the live stream: its ``id`` (resume after it with ``last_event_id``),
    its kind (``status``) and its data (``event_id``, ``type``, ``notification_id``,
    ``status``, ``at``, ``step``)."""

    id: str
    kind: str
    data: dict[str, Any]


class StreamGap(Exception):
    """The log no longer holds events the stream would have resumed with."""


async def _sse(lines: AsyncIterator[str]) -> AsyncIterator[StreamEvent]:
    """Server-Sent Events from a response's lines (the fields Pigeon sends)."""
    fields: dict[str, str] = {}
    last_id = ""
    async for line in lines:
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            continue
        last_id = fields.get("id", last_id)
        if "data" in fields:
            yield StreamEvent(last_id, fields.get("event", "message"), json.loads(fields["data"]))
        elif "id" in fields:  # a position only (the opening one, keep-alives): kind ""
            yield StreamEvent(last_id, "", {})
        fields = {}


# -- the blocking client -----------------------------------------------------------
class Client:
    """Pigeon's API, blocking (``httpx.Client``). Use it as a context manager, or close it.

    ``base_url`` and ``api_key`` default to ``$PIGEON_URL`` (else
    ``http://127.0.0.1:8000``) and ``$PIGEON_API_KEY``. ``transport`` and
    ``trust_env`` (proxy settings from the environment) are httpx's.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        trust_env: bool = True,
    ) -> None:
        url, headers = _settings(base_url, api_key)
        self._http = httpx.Client(
            base_url=url, headers=headers, timeout=timeout, transport=transport, trust_env=trust_env
        )
        self._retries = _Retries(max_retries, backoff)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _request(self, call: _Call) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=tuple(call.params),
                    json=call.json,
                    headers=call.headers,
                )
            except httpx.TransportError:
                wait = self._retries.delay(attempt, None)
                if wait is None:
                    raise
            else:
                wait = self._retries.delay(attempt, response)
                if wait is None:
                    return response
            time.sleep(wait)

    def send_sms(
        self,
        to: str,
        body: str,
        *,
        from_: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> NotificationAccepted:
        """Send an SMS; answers once it is stored (``202``). Safe to retry with the same key."""
        call = _send_call(_sms(to, body, from_, metadata), idempotency_key)
        return _parse(self._request(call), NotificationAccepted)

    def send_batch(self, items: Sequence[Mapping[str, Any]]) -> BatchAccepted:
        """Send up to 1,000 notifications (bodies of a single send, each may carry its own
        ``idempotency_key``); each result says 202 or why that item was refused."""
        return _parse(self._request(_batch_call(items)), BatchAccepted)

    def get(self, notification_id: str) -> NotificationDetail:
        """A notification's status, attempts and timeline."""
        return _parse(
            self._request(_Call("GET", f"/v1/notifications/{quote(notification_id, safe='')}")),
            NotificationDetail,
        )

    def cancel(self, notification_id: str) -> NotificationDetail:
        """Cancel a notification no provider has been handed yet (:class:`Conflict` once one
        may have it); answers it, now ``canceled``."""
        return _parse(self._request(_cancel_call(notification_id)), NotificationDetail)

    def list(
        self,
        *,
        status: NotificationStatus | str | None = None,
        to: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> NotificationPage:
        """One page of notifications, newest first (``page.next`` is the next page's cursor)."""
        call = _list_call(
            status=status,
            to=to,
            since=since,
            until=until,
            metadata=metadata,
            limit=limit,
            cursor=cursor,
        )
        return _parse(self._request(call), NotificationPage)

    def iterate(
        self,
        *,
        status: NotificationStatus | str | None = None,
        to: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
        page_size: int = 100,
    ) -> Iterator[NotificationSummary]:
        """Every notification matching the filters, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.list(
                status=status,
                to=to,
                since=since,
                until=until,
                metadata=metadata,
                limit=page_size,
                cursor=cursor,
            )
            yield from page.items
            if page.next is None:
                return
            cursor = page.next

    def usage(self, from_: date, to: date) -> builtins.list[UsageItem]:
        """SMS usage per UTC day, ``from_`` to ``to`` inclusive."""
        response = self._request(_usage_call(from_, to))
        _raise_for(response)
        return _USAGE.validate_json(response.content)

    def quota(self) -> dict[str, Any]:
        """This month's segments against the account's quota, and its rate limit
        (``GET /v1/usage/quota``)."""
        response = self._request(_Call("GET", "/v1/usage/quota"))
        _raise_for(response)
        return dict(response.json())

    def wait(
        self, notification_id: str, *, within: float = 60.0, interval: float = 0.5
    ) -> NotificationDetail:
        """Poll until the notification is delivered, undelivered or failed; TimeoutError after
        ``within`` seconds (the last view is in the error's ``args[1]``)."""
        deadline = time.monotonic() + within
        while True:
            view = self.get(notification_id)
            if _final(view):
                return view
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{notification_id} still {view.status} after {within:g} s", view
                )
            time.sleep(interval)


# -- the asyncio client -------------------------------------------------------------
class AsyncClient:
    """Pigeon's API for asyncio (``httpx.AsyncClient``); the same methods as :class:`Client`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
    ) -> None:
        url, headers = _settings(base_url, api_key)
        self._http = httpx.AsyncClient(
            base_url=url, headers=headers, timeout=timeout, transport=transport, trust_env=trust_env
        )
        self._retries = _Retries(max_retries, backoff)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _request(self, call: _Call) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=tuple(call.params),
                    json=call.json,
                    headers=call.headers,
                )
            except httpx.TransportError:
                wait = self._retries.delay(attempt, None)
                if wait is None:
                    raise
            else:
                wait = self._retries.delay(attempt, response)
                if wait is None:
                    return response
            await asyncio.sleep(wait)

    async def send_sms(
        self,
        to: str,
        body: str,
        *,
        from_: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> NotificationAccepted:
        """See :meth:`Client.send_sms`."""
        call = _send_call(_sms(to, body, from_, metadata), idempotency_key)
        return _parse(await self._request(call), NotificationAccepted)

    async def send_batch(self, items: Sequence[Mapping[str, Any]]) -> BatchAccepted:
        """See :meth:`Client.send_batch`."""
        return _parse(await self._request(_batch_call(items)), BatchAccepted)

    async def get(self, notification_id: str) -> NotificationDetail:
        """See :meth:`Client.get`."""
        call = _Call("GET", f"/v1/notifications/{quote(notification_id, safe='')}")
        return _parse(await self._request(call), NotificationDetail)

    async def cancel(self, notification_id: str) -> NotificationDetail:
        """See :meth:`Client.cancel`."""
        return _parse(await self._request(_cancel_call(notification_id)), NotificationDetail)

    async def list(
        self,
        *,
        status: NotificationStatus | str | None = None,
        to: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> NotificationPage:
        """See :meth:`Client.list`."""
        call = _list_call(
            status=status,
            to=to,
            since=since,
            until=until,
            metadata=metadata,
            limit=limit,
            cursor=cursor,
        )
        return _parse(await self._request(call), NotificationPage)

    async def iterate(
        self,
        *,
        status: NotificationStatus | str | None = None,
        to: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[NotificationSummary]:
        """See :meth:`Client.iterate`."""
        cursor: str | None = None
        while True:
            page = await self.list(
                status=status,
                to=to,
                since=since,
                until=until,
                metadata=metadata,
                limit=page_size,
                cursor=cursor,
            )
            for item in page.items:
                yield item
            if page.next is None:
                return
            cursor = page.next

    async def usage(self, from_: date, to: date) -> builtins.list[UsageItem]:
        """See :meth:`Client.usage`."""
        response = await self._request(_usage_call(from_, to))
        _raise_for(response)
        return _USAGE.validate_json(response.content)

    async def quota(self) -> dict[str, Any]:
        """See :meth:`Client.quota`."""
        response = await self._request(_Call("GET", "/v1/usage/quota"))
        _raise_for(response)
        return dict(response.json())

    async def stream(
        self,
        *,
        notification_ids: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        reconnects: int = 10,
        positions: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        """Every status change of the account's notifications as it happens
        (``GET /v1/notifications/stream``), from now or after ``last_event_id``.

        A dropped connection is resumed where it stopped (``Last-Event-ID``), up to
        ``reconnects`` times in a row; an ``event: gap`` (what was missed is gone
        from the log) is raised as :class:`StreamGap`. Deduplicate by ``event_id``.
        ``positions``: also yield the position-only events (kind ``""``): the stream's
        opening one, and one per quiet spell - to know it is open, or to save where to
        resume.
        """
        params = [("notification_id", n) for n in notification_ids]
        params += [(f"metadata.{k}", v) for k, v in (metadata or {}).items()]
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                async with self._http.stream(
                    "GET",
                    "/v1/notifications/stream",
                    params=tuple(params),
                    headers=headers,
                    timeout=httpx.Timeout(self._http.timeout.connect, read=None),
                ) as response:
                    if response.is_error:
                        await response.aread()
                        _raise_for(response)
                    async for event in _sse(response.aiter_lines()):
                        failures = 0
                        last_event_id = event.id or last_event_id
                        if event.kind == "gap":
                            raise StreamGap(str(event.data.get("detail", "")))
                        if event.kind == "status" or (positions and not event.kind):
                            yield event
                return  # the server ended the stream (it is stopping): done
            except httpx.TransportError:
                failures += 1
                if failures > reconnects:
                    raise
                await asyncio.sleep(min(2.0, 0.1 * 2**failures))

    async def wait(
        self, notification_id: str, *, within: float = 60.0, interval: float = 0.5
    ) -> NotificationDetail:
        """See :meth:`Client.wait`."""
        deadline = time.monotonic() + within
        while True:
            view = await self.get(notification_id)
            if _final(view):
                return view
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{notification_id} still {view.status} after {within:g} s", view
                )
            await asyncio.sleep(interval)
