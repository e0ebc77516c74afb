"""Status webhooks in the store: endpoints, deliveries, and the dispatcher's queue.

Every write goes through the store's group committer (quiet: nothing here
publishes an event), every read through its reader connections. The webhook
dispatcher writes one delivery per (endpoint, status event) - unique, so an
event consumed twice makes one delivery - and sends them from this table:

- a delivery is *due* while ``pending`` and ``next_attempt_at`` has passed;
- only the oldest pending delivery of an (endpoint, notification) is sent
  (``seq`` is the order they were written in, the log's order), so a receiver
  never sees a later status of a notification before an earlier one;
- a claim moves ``next_attempt_at`` a lease ahead: a dispatcher killed while
  sending leaves the delivery due again once the lease ends (at least once);
- a disabled endpoint's pending deliveries wait with ``next_attempt_at`` NULL
  and are due at once when it is enabled again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from sqlalchemy import Row, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from pigeon.domain.events import utcnow
from pigeon.domain.ids import ulid
from pigeon.domain.webhooks import new_secret
from pigeon.errors import ConflictError, NotFoundError
from pigeon.store.group_commit import GroupCommitter
from pigeon.store.rows import utc
from pigeon.store.schema import webhook_deliveries, webhook_endpoints
from pigeon.store.webhook_rows import (
    DELIVERED,
    ENDPOINT_PREFIX,
    FAILED,
    MAX_ENDPOINTS,
    MAX_ERROR_CHARS,
    MESSAGE_PREFIX,
    PENDING,
    AttemptResult,
    DeliveryView,
    DueDelivery,
    EndpointView,
    NewDelivery,
    Subscriber,
    delivery_view,
    due_delivery,
    endpoint_view,
)

T = TypeVar("T")
_e = webhook_endpoints.c
_d = webhook_deliveries.c


def _owned(conn: Connection, account_id: str, endpoint_id: str) -> Row[Any]:
    """The endpoint's row, or NotFoundError (also for another account's endpoint)."""
    row = conn.execute(
        select(webhook_endpoints).where(_e.id == endpoint_id, _e.account_id == account_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no webhook endpoint {endpoint_id!r} in this account")
    return row


def _disable(conn: Connection, endpoint_ids: Iterable[str], now: datetime, reason: str) -> None:
    ids = list(endpoint_ids)
    conn.execute(
        update(webhook_endpoints)
        .where(_e.id.in_(ids), _e.disabled_at.is_(None))
        .values(disabled_at=now, disabled_reason=reason)
    )
    # its pending deliveries wait, not due, until it is enabled again
    conn.execute(
        update(webhook_deliveries)
        .where(_d.endpoint_id.in_(ids), _d.state == PENDING)
        .values(next_attempt_at=None)
    )


def _record_delivered(
    conn: Connection, results: Sequence[AttemptResult], now: datetime
) -> set[str]:
    """Mark the deliveries that went through, one statement per status code (a flush
    carries hundreds under load, and a round trip each was the dispatcher's bottleneck
    on PostgreSQL); ``last_error`` stays: the log shows what the retries were about.
    Returns the endpoints that answered."""
    delivered: dict[int | None, list[int]] = {}
    endpoints: set[str] = set()
    for r in results:
        if r.delivered:
            delivered.setdefault(r.status_code, []).append(r.seq)
            endpoints.add(r.endpoint_id)
    for status_code, seqs in delivered.items():
        conn.execute(
            update(webhook_deliveries)
            .where(_d.seq.in_(seqs))
            .values(
                attempts=_d.attempts + 1,
                last_status_code=status_code,
                state=DELIVERED,
                delivered_at=now,
                next_attempt_at=None,
            )
        )
    return endpoints


class WebhookStore:
    """The store's webhook tables, on its group committer and reader."""

    def __init__(
        self,
        commits: GroupCommitter,
        read: Callable[[Callable[[Connection], Any]], Awaitable[Any]],
        dialect: str,
    ) -> None:
        self._commits = commits
        self._read = read
        self._dialect = dialect

    async def _write(self, work: Callable[[Connection], T]) -> T:
        # quiet: nothing here publishes, so the commit wakes no consumer
        return await self._commits.submit(work, quiet=True)

    # -- endpoints (the API) -------------------------------------------------------
    async def create_endpoint(
        self,
        account_id: str,
        *,
        url: str,
        event_types: Sequence[str],
        description: str,
        limit: int = MAX_ENDPOINTS,
    ) -> tuple[EndpointView, str]:
        """A new endpoint and its secret (returned only here); ConflictError past ``limit``."""
        secret = new_secret()
        endpoint_id = ENDPOINT_PREFIX + ulid()

        def work(conn: Connection) -> EndpointView:
            count = conn.execute(
                select(func.count())
                .select_from(webhook_endpoints)
                .where(_e.account_id == account_id)
            ).scalar_one()
            if count >= limit:
                raise ConflictError(
                    f"this account has {count} webhook endpoints, the most it may have; "
                    "delete one first"
                )
            conn.execute(
                webhook_endpoints.insert().values(
                    id=endpoint_id,
                    account_id=account_id,
                    url=url,
                    event_types=orjson.dumps(list(event_types)).decode(),
                    description=description,
                    secret=secret,
                    created_at=utcnow(),
                )
            )
            return endpoint_view(_owned(conn, account_id, endpoint_id))

        return await self._write(work), secret

    async def endpoints(self, account_id: str) -> list[EndpointView]:
        """The account's endpoints, oldest first."""

        def work(conn: Connection) -> list[EndpointView]:
            rows = conn.execute(
                select(webhook_endpoints)
                .where(_e.account_id == account_id)
                .order_by(_e.created_at, _e.id)
            ).all()
            return [endpoint_view(row) for row in rows]

        result: list[EndpointView] = await self._read(work)
        return result

    async def endpoint(self, account_id: str, endpoint_id: str) -> EndpointView:
        """One of the account's endpoints, or NotFoundError."""
        result: EndpointView = await self._read(
            lambda conn: endpoint_view(_owned(conn, account_id, endpoint_id))
        )
        return result

    async def delete_endpoint(self, account_id: str, endpoint_id: str) -> None:
        """Delete an endpoint and its delivery log; NotFoundError if it is not there."""

        def work(conn: Connection) -> None:
            _owned(conn, account_id, endpoint_id)
            conn.execute(delete(webhook_deliveries).where(_d.endpoint_id == endpoint_id))
            conn.execute(delete(webhook_endpoints).where(_e.id == endpoint_id))

        await self._write(work)

    async def rotate_secret(
        self, account_id: str, endpoint_id: str, grace: timedelta
    ) -> tuple[EndpointView, str]:
        """A new secret; the current one keeps signing for ``grace`` (zero: not at all)."""
        secret = new_secret()

        def work(conn: Connection) -> EndpointView:
            row = _owned(conn, account_id, endpoint_id)
            keep = grace > timedelta(0)
            conn.execute(
                update(webhook_endpoints)
                .where(_e.id == endpoint_id)
                .values(
                    secret=secret,
                    previous_secret=row.secret if keep else None,
                    previous_secret_expires_at=utcnow() + grace if keep else None,
                )
            )
            return endpoint_view(_owned(conn, account_id, endpoint_id))

        return await self._write(work), secret

    async def enable(self, account_id: str, endpoint_id: str) -> EndpointView:
        """Enable a disabled endpoint: its waiting deliveries are due at once."""

        def work(conn: Connection) -> EndpointView:
            _owned(conn, account_id, endpoint_id)
            now = utcnow()
            conn.execute(
                update(webhook_endpoints)
                .where(_e.id == endpoint_id)
                .values(disabled_at=None, disabled_reason=None, failing_since=None)
            )
            conn.execute(
                update(webhook_deliveries)
                .where(_d.endpoint_id == endpoint_id, _d.state == PENDING)
                .values(next_attempt_at=now)
            )
            return endpoint_view(_owned(conn, account_id, endpoint_id))

        return await self._write(work)

    async def deliveries(
        self, account_id: str, endpoint_id: str, *, state: str | None, limit: int
    ) -> list[DeliveryView]:
        """The endpoint's delivery log, newest first."""

        def work(conn: Connection) -> list[DeliveryView]:
            _owned(conn, account_id, endpoint_id)
            query = select(webhook_deliveries).where(_d.endpoint_id == endpoint_id)
            if state is not None:
                query = query.where(_d.state == state)
            rows = conn.execute(query.order_by(_d.seq.desc()).limit(limit)).all()
            return [delivery_view(row) for row in rows]

        result: list[DeliveryView] = await self._read(work)
        return result

    async def replay(self, account_id: str, endpoint_id: str, since: datetime) -> int:
        """Send every delivery written since ``since`` again (a fresh retry budget, the
        same message id); returns how many."""

        def work(conn: Connection) -> int:
            row = _owned(conn, account_id, endpoint_id)
            result = conn.execute(
                update(webhook_deliveries)
                .where(_d.endpoint_id == endpoint_id, _d.created_at >= since)
                .values(
                    state=PENDING,
                    attempts=0,
                    delivered_at=None,
                    # a disabled endpoint's wait until it is enabled again
                    next_attempt_at=utcnow() if row.disabled_at is None else None,
                )
            )
            return int(result.rowcount)

        return await self._write(work)

    # -- the dispatcher ---------------------------------------------------------------
    async def subscribers(self, account_ids: Iterable[str]) -> dict[str, list[Subscriber]]:
        """The enabled endpoints of each of these accounts (an account without any: absent)."""
        ids = list(account_ids)

        def work(conn: Connection) -> dict[str, list[Subscriber]]:
            rows = conn.execute(
                select(_e.id, _e.account_id, _e.event_types).where(
                    _e.account_id.in_(ids), _e.disabled_at.is_(None)
                )
            ).all()
            found: dict[str, list[Subscriber]] = {}
            for row in rows:
                found.setdefault(row.account_id, []).append(
                    Subscriber(row.id, frozenset(orjson.loads(row.event_types)))
                )
            return found

        result: dict[str, list[Subscriber]] = await self._read(work)
        return result

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> None:
        """Write deliveries in one transaction; one already written is left as it is."""
        now = utcnow()
        rows = [
            {
                "id": MESSAGE_PREFIX + ulid(),
                "endpoint_id": d.endpoint_id,
                "event_id": d.event_id,
                "notification_id": d.notification_id,
                "event_type": d.event_type,
                "payload": d.payload,
                "state": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for d in deliveries
        ]
        insert = postgresql_insert if self._dialect == "postgresql" else sqlite_insert
        statement = insert(webhook_deliveries).on_conflict_do_nothing(
            index_elements=["endpoint_id", "event_id"]
        )

        def work(conn: Connection) -> None:
            conn.execute(statement, rows)

        await self._write(work)

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[DueDelivery]:
        """Up to ``limit`` due deliveries, each the oldest pending one of its (endpoint,
        notification), leased until ``now + lease``."""
        earlier = aliased(webhook_deliveries)
        query = (
            select(
                _d.seq,
                _d.id,
                _d.endpoint_id,
                _d.payload,
                _d.attempts,
                _e.url,
                _e.secret,
                _e.previous_secret,
                _e.previous_secret_expires_at,
                _e.disabled_at,
            )
            .join(webhook_endpoints, _e.id == _d.endpoint_id)
            .where(
                _d.state == PENDING,
                _d.next_attempt_at <= now,
                ~exists().where(
                    earlier.c.endpoint_id == _d.endpoint_id,
                    earlier.c.notification_id == _d.notification_id,
                    earlier.c.state == PENDING,
                    earlier.c.seq < _d.seq,
                ),
            )
            .order_by(_d.next_attempt_at, _d.seq)
            .limit(limit)
            .with_for_update(skip_locked=True, of=webhook_deliveries)
        )

        def work(conn: Connection) -> list[DueDelivery]:
            rows = conn.execute(query).all()
            stale = [r.seq for r in rows if r.disabled_at is not None]
            if stale:  # written in the moment its endpoint was disabled: it waits too
                conn.execute(
                    update(webhook_deliveries).where(_d.seq.in_(stale)).values(next_attempt_at=None)
                )
            claimed = [r for r in rows if r.disabled_at is None]
            if claimed:
                conn.execute(
                    update(webhook_deliveries)
                    .where(_d.seq.in_([r.seq for r in claimed]))
                    .values(next_attempt_at=now + lease)
                )
            return [due_delivery(row, now) for row in claimed]

        return await self._write(work)

    async def next_due(self) -> datetime | None:
        """When the earliest delivery that may be sent next is due (None: none waits).

        Only the oldest pending delivery of each (endpoint, notification) counts: the
        ones behind it are not due before it is done, whatever their own time says.
        """
        earlier = aliased(webhook_deliveries)
        query = select(func.min(_d.next_attempt_at)).where(
            _d.state == PENDING,
            _d.next_attempt_at.is_not(None),
            ~exists().where(
                earlier.c.endpoint_id == _d.endpoint_id,
                earlier.c.notification_id == _d.notification_id,
                earlier.c.state == PENDING,
                earlier.c.seq < _d.seq,
            ),
        )

        def work(conn: Connection) -> datetime | None:
            value = conn.execute(query).scalar_one_or_none()
            return utc(value) if value is not None else None

        result: datetime | None = await self._read(work)
        return result

    async def finish(
        self, results: Sequence[AttemptResult], now: datetime, disable_after: timedelta
    ) -> list[tuple[str, str]]:
        """Record attempts' outcomes in one transaction; an endpoint that answered 410
        or has failed for ``disable_after`` is disabled. Returns ``(endpoint, reason)``
        of those disabled now."""

        def work(conn: Connection) -> list[tuple[str, str]]:
            failing: set[str] = set()
            gone: set[str] = set()
            last_error: dict[str, str] = {}
            ok = _record_delivered(conn, results, now)
            for r in results:
                if r.delivered:
                    continue
                values: dict[str, Any] = {}
                if r.counted:
                    values["attempts"] = _d.attempts + 1
                    values["last_status_code"] = r.status_code
                    values["last_error"] = (r.error or "")[:MAX_ERROR_CHARS]
                    failing.add(r.endpoint_id)
                    last_error[r.endpoint_id] = values["last_error"]
                if r.gone:
                    gone.add(r.endpoint_id)
                if r.next_attempt_at is None and r.counted and not r.gone:
                    values.update(state=FAILED, next_attempt_at=None)
                else:
                    values["next_attempt_at"] = r.next_attempt_at or now
                conn.execute(update(webhook_deliveries).where(_d.seq == r.seq).values(**values))
            failing -= ok
            if ok:
                conn.execute(
                    update(webhook_endpoints)
                    .where(_e.id.in_(ok), _e.failing_since.is_not(None))
                    .values(failing_since=None)
                )
            if failing:
                conn.execute(
                    update(webhook_endpoints)
                    .where(_e.id.in_(failing), _e.failing_since.is_(None))
                    .values(failing_since=now)
                )
            disabled: list[tuple[str, str]] = []
            for endpoint_id in sorted(gone):
                reason = "the endpoint answered 410 Gone"
                _disable(conn, [endpoint_id], now, reason)
                disabled.append((endpoint_id, reason))
            rows = conn.execute(
                select(_e.id, _e.failing_since).where(
                    _e.id.in_(failing - gone),
                    _e.disabled_at.is_(None),
                    _e.failing_since <= now - disable_after,
                )
            ).all()
            for row in rows:
                reason = (
                    f"every attempt failed since {utc(row.failing_since).isoformat()} "
                    f"(disabled after {disable_after.total_seconds() / 3600:g} h); "
                    f"last error: {last_error.get(row.id, '')}"
                )
                _disable(conn, [row.id], now, reason)
                disabled.append((row.id, reason))
            return disabled

        return await self._write(work)

    async def purge_deliveries(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` finished (delivered or failed) deliveries made before
        ``before``, oldest first; returns how many."""
        oldest = (
            select(_d.seq)
            .where(_d.state != PENDING, _d.created_at < before)
            .order_by(_d.seq)
            .limit(limit)
        )

        def work(conn: Connection) -> int:
            statement = delete(webhook_deliveries).where(_d.seq.in_(oldest.scalar_subquery()))
            return int(conn.execute(statement).rowcount)

        return await self._write(work)
