"""Acting on notifications beyond a single send: a batch send, and cancel.

``POST /v1/notifications:batch``: many sends in one request and one transaction.

Each item is checked on its own, exactly as ``POST /v1/notifications`` checks
its body (the same model, the same domain rules, the same problem details), so
one bad item refuses that item only. Every item that passes is stored in one
transaction, with the claim of its idempotency key if it has one: a crash
stores all of them or none. An item whose key was used before (by a single
send or an earlier batch) gets the first answer, marked ``replayed``, or a 409
when the key came with another body; a key repeated inside the batch is
answered from its first item the same way.

``POST /v1/notifications/{id}/cancel``: see :meth:`SqlStore.cancel
<pigeon.store.sql_store.SqlStore.cancel>`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pydantic
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from pigeon import tracing
from pigeon.api import problems
from pigeon.api.accepting import accepted_answer, new_notification
from pigeon.api.bodies import detail_body
from pigeon.api.deps import AccountDep, could_be_our_id, json_response
from pigeon.api.idempotency import check_idempotency_key, request_hash
from pigeon.api.schemas import (
    BatchAccepted,
    BatchItem,
    NotificationDetail,
    PlainItem,
    SendBatch,
    plain_item,
)
from pigeon.domain.events import utcnow
from pigeon.domain.ids import new_notification_ids
from pigeon.domain.notification import Notification
from pigeon.errors import NotFoundError, PermissionDenied, ValidationError
from pigeon.services.projector import STATUS_GROUP
from pigeon.store.idempotency import IdempotentRequest
from pigeon.store.sql_store import SqlStore

BATCH_PATH = "/v1/notifications:batch"

#: the item's field that is not part of the request it guards
_KEY_FIELD = "idempotency_key"


@dataclass(frozen=True)
class _Valid:
    index: int
    notification: Notification
    answer: dict[str, Any]
    claim: IdempotentRequest | None


async def send_batch(
    store: SqlStore,
    account_id: str,
    batch: SendBatch,
    headers: Mapping[bytes, bytes] | None = None,
    admit: Callable[[int], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """The 207 body for ``batch``: every valid item stored in one transaction.

    ``headers``: the request's, for the trace its events continue (``pigeon.tracing``).
    ``admit``: counts an item's segments against the account's quota, or raises
    :class:`~pigeon.api.account_limits.QuotaExceeded` (that item is refused with 403).
    """
    results: list[dict[str, Any] | None] = [None] * len(batch.notifications)
    valid: list[_Valid] = []
    #: a key's first item in this batch, and later items repeating that key
    first_with_key: dict[str, _Valid] = {}
    repeats: list[tuple[int, _Valid, str]] = []
    now = utcnow()  # the items share one transaction, and so one creation time
    requests = _validated(batch.notifications)
    ids = new_notification_ids(len(requests), int(now.timestamp() * 1000))
    for index, raw in enumerate(batch.notifications):
        checked = _check(index, raw, account_id, now, requests[index], notification_id=ids[index])
        if isinstance(checked, dict):
            results[index] = checked
            continue
        claim = checked.claim
        if admit is not None and (claim is None or claim.key not in first_with_key):
            refused = await _over_quota(index, checked, admit)
            if refused is not None:
                results[index] = refused
                continue
        if claim is not None and claim.key in first_with_key:
            repeats.append((index, first_with_key[claim.key], claim.request_hash))
            continue
        if claim is not None:
            first_with_key[claim.key] = checked
        valid.append(checked)
    items = [(v.notification, v.claim) for v in valid]
    records = await _accept(store, items, headers)
    for item, record in zip(valid, records, strict=True):
        if record is None:
            results[item.index] = _accepted(item.index, item.answer, replayed=False)
        elif item.claim is not None and record.request_hash != item.claim.request_hash:
            results[item.index] = _conflict(item.index, item.claim.key, record.notification_id)
        else:
            results[item.index] = _accepted(item.index, orjson.loads(record.response), True)
    for index, first, digest in repeats:
        results[index] = _repeat(index, first, digest, results[first.index])
    done = [r for r in results if r is not None]
    accepted = sum(r["status"] == 202 for r in done)
    return {"accepted": accepted, "refused": len(done) - accepted, "results": done}


class _OrjsonRequest(Request):
    """A request whose JSON body orjson reads: a batch is up to a few hundred KB, and the
    standard library took twice as long. Where orjson refuses what the standard library
    reads (``NaN``, integers past 64 bits, lone surrogates, other encodings than UTF-8),
    the standard library reads it, so every body gets the answer it got before."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._json = json.loads(body)
        return self._json


class _OrjsonRoute(APIRoute):
    """A route whose handler reads its body through :class:`_OrjsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def read_by_orjson(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return read_by_orjson


def actions_router() -> APIRouter:
    """The batch send and cancel routes (the store is the app's, ``app.state.store``)."""
    router = APIRouter(route_class=_OrjsonRoute)

    @router.post(
        BATCH_PATH,
        status_code=207,
        response_model=BatchAccepted,
        summary="Send up to 1,000 notifications at once",
        description=(
            "Each item is the body of `POST /v1/notifications`, plus an optional "
            "`idempotency_key`, and is checked on its own: the answer (207 Multi-Status) "
            "has one result per item, in order, each 202 with the accepted notification or "
            "the problem a single send would have answered. Every accepted item is stored "
            "in one transaction."
        ),
        responses=problems.documented(*problems.AUTHENTICATED, 400),
    )
    async def send_notifications(
        request: Request, batch: SendBatch, account: AccountDep
    ) -> Response:
        store: SqlStore = request.app.state.store
        headers = dict(request.scope["headers"])
        quota = request.app.state.quota
        admit = (
            (lambda segments: quota.admit(account, segments))
            if account.limits is not None and account.limits.monthly_segment_quota is not None
            else None
        )
        return json_response(await send_batch(store, account.id, batch, headers, admit), 207)

    @router.post(
        "/v1/notifications/{notification_id}/cancel",
        response_model=NotificationDetail,
        summary="Cancel a notification no provider has been handed yet",
        description=(
            "Its status becomes `canceled` (final) and no SMS is sent. A notification an "
            "attempt has started for (it may be with a provider) answers 409, as does one "
            "already delivered, undelivered or failed; canceling twice answers the "
            "canceled notification again."
        ),
        responses=problems.documented(*problems.AUTHENTICATED, 404, 409),
    )
    async def cancel_notification(
        request: Request, notification_id: str, account: AccountDep
    ) -> Response:
        store: SqlStore = request.app.state.store
        if not could_be_our_id(notification_id):
            raise NotFoundError(f"no notification {notification_id!r} in this account")
        await store.cancel(account.id, notification_id, projector=STATUS_GROUP)
        view = await store.get_view(account.id, notification_id)
        if view is None:  # retention removed it in between: as good as unknown
            raise NotFoundError(f"no notification {notification_id!r} in this account")
        return json_response(detail_body(view))

    return router


#: items of a batch, validated in one call
_ITEMS = pydantic.TypeAdapter(list[BatchItem])


def _validated(raws: list[Any]) -> list[BatchItem | PlainItem | None]:
    """Each item as a request where that is known at once: a plain item as it is
    (:func:`~pigeon.api.schemas.plain_item`), the others validated in one call when all
    of them are valid; None for an item to check alone (for its own problem)."""
    requests: list[BatchItem | PlainItem | None] = [plain_item(raw) for raw in raws]
    others = [index for index, request in enumerate(requests) if request is None]
    if others:
        try:
            validated = _ITEMS.validate_python([raws[index] for index in others])
        except pydantic.ValidationError:
            return requests
        for index, item in zip(others, validated, strict=True):
            requests[index] = item
    return requests


def _check(
    index: int,
    raw: Any,
    account_id: str,
    now: datetime,
    valid: BatchItem | PlainItem | None = None,
    *,
    notification_id: str | None = None,
) -> _Valid | dict[str, Any]:
    """The item as a notification to store, or its refusal (``valid``: the item as a
    request, already validated; ``notification_id``: its id if accepted, made at ``now``)."""
    if valid is None and not isinstance(raw, dict):
        return _refused(index, 400, "must be a JSON object (the body of a single send)")
    try:
        item = BatchItem.model_validate(raw) if valid is None else valid
        key = item.idempotency_key
        if key is not None:
            try:
                key = check_idempotency_key(key)
            except ValidationError as exc:
                raise ValidationError(_KEY_FIELD, exc.reason) from None
        notification = new_notification(item, account_id, now, notification_id)
    except pydantic.ValidationError as exc:
        status, detail, errors = problems.validation_problem(exc.errors())
        return _refused(index, status, detail, errors)
    except ValidationError as exc:
        return _refused(index, 422, str(exc), [{"field": exc.field, "reason": exc.reason}])
    answer = accepted_answer(notification)
    claim = (
        IdempotentRequest(
            account_id=account_id,
            key=key,
            request_hash=request_hash(item, exclude={_KEY_FIELD}),
            response=orjson.dumps(answer).decode(),
        )
        if key is not None and isinstance(item, BatchItem)  # a plain item has no key
        else None
    )
    return _Valid(index, notification, answer, claim)


async def _accept(
    store: SqlStore,
    items: list[tuple[Notification, IdempotentRequest | None]],
    headers: Mapping[bytes, bytes] | None,
) -> list[Any]:
    """Store the valid items in one transaction (in the caller's trace, if any)."""
    if tracing.ENABLED or (headers is not None and b"traceparent" in headers):
        return await tracing.traced_accept_batch(store.accept_batch, items, headers or {})
    return await store.accept_batch(items)


async def _over_quota(
    index: int, item: _Valid, admit: Callable[[int], Awaitable[None]]
) -> dict[str, Any] | None:
    """The item's 403 when the account's quota does not cover it (it is then not stored)."""
    try:
        await admit(item.notification.segments)
    except PermissionDenied as exc:
        return _refused(index, 403, str(exc))
    return None


def _repeat(
    index: int, first: _Valid, digest: str, answered: dict[str, Any] | None
) -> dict[str, Any]:
    """An item repeating the key of an earlier item of the batch: answered like that one."""
    if answered is None or first.claim is None:
        raise RuntimeError("a repeated key's first item has no answer")  # never: see send_batch
    if answered["status"] != 202:
        return {**answered, "index": index}
    if digest != first.claim.request_hash:
        return _conflict(index, first.claim.key, answered["notification"]["id"])
    return _accepted(index, answered["notification"], replayed=True)


def _accepted(index: int, notification: dict[str, Any], replayed: bool) -> dict[str, Any]:
    return {"index": index, "status": 202, "notification": notification, "replayed": replayed}


def _refused(
    index: int, status: int, detail: str, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body = problems.problem_body(status, f"notifications[{index}]: {detail}", errors=errors)
    return {"index": index, "status": status, "problem": body}


def _conflict(index: int, key: str, notification_id: str) -> dict[str, Any]:
    return _refused(
        index,
        409,
        f"idempotency_key {key!r} was already used with a different request body "
        f"(notification {notification_id}); use a new key for a new request",
    )
