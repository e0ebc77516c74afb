"""The store: accounts, keys, notifications, attempts, status and usage in SQL.

The same code on SQLite (the embedded default) and PostgreSQL. Every write
that has an event goes through one transaction with its event (see
:mod:`pigeon.store.event_log`), and through the group committer so that
concurrent requests share commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pigeon import metrics
from pigeon.bus.doorbell import Topics
from pigeon.bus.port import Message
from pigeon.bus.sqlite_schema import create_schema
from pigeon.bus.sqlite_signals import CommitSignals
from pigeon.bus.sqlite_write_lock import FileWriteLock
from pigeon.domain.delivery import DeliveryReport
from pigeon.domain.events import (
    TOPIC_SMS_REQUESTED,
    Event,
    SmsCanceled,
    SmsRequested,
    SmsSent,
    utcnow,
)
from pigeon.domain.ids import ulid
from pigeon.domain.notification import (
    Account,
    AccountLimits,
    Notification,
    NotificationView,
    TimelineEntry,
    UsageDay,
)
from pigeon.domain.status import NotificationStatus
from pigeon.errors import (
    ConflictError,
    KeyAlreadyUsed,
    NotFoundError,
    StoreUnavailable,
    ValidationError,
)
from pigeon.store import api_keys as api_keys_sql
from pigeon.store import (
    attempts,
    idempotency,
    listing,
    migrate,
    pg_statements,
    planner_statistics,
    projection,
    retention,
    sqlite_rows,
)
from pigeon.store import dead_letters as dlq
from pigeon.store import intake as intake_sql
from pigeon.store import outbox as outbox_sql
from pigeon.store.api_keys import ApiKeyView
from pigeon.store.engine import DatabaseUrl, reader_engine, writer_engine
from pigeon.store.event_log import (
    EventLog,
    OutboxEventLog,
    RawRecord,
    SqliteEventLog,
    append,
)
from pigeon.store.group_commit import GroupCommitter
from pigeon.store.key_cache import KeyCache
from pigeon.store.rows import (
    REQUEST_HEADERS,
    notification_from_row,
    notification_values,
    request_event_sql,
    utc,
)
from pigeon.store.schema import (
    accounts,
    api_keys,
    notifications,
    outbox,
    pending_callbacks,
    send_attempts,
    timeline,
    usage_daily,
)
from pigeon.store.webhooks import WebhookStore

T = TypeVar("T")
KEY_PREFIX = "pgn_"
_INSERT_NOTIFICATION = insert(notifications)
_INSERT_PENDING = insert(pending_callbacks)
_INTAKE_HEADS = select(
    select(func.max(intake_sql.intake_notifications.c.seq)).scalar_subquery(),
    select(func.max(intake_sql.intake_callbacks.c.seq)).scalar_subquery(),
)
MAX_USAGE_DAYS = 366


def _new_key() -> str:
    """A new API key: 190 random bits after the ``pgn_`` prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


def _insert_key(conn: Connection, account_id: str, key: str, admin: bool) -> None:
    """Store a new key: its hash, its first characters, whose it is."""
    conn.execute(
        insert(api_keys).values(
            id="key_" + ulid(),
            account_id=account_id,
            key_hash=hash_key(key),
            prefix=key[:8],
            created_at=utcnow(),
            is_admin=admin,
        )
    )


def _nothing(_conn: Connection) -> None:
    """An empty transaction: opens the writer's connection (:meth:`SqlStore.warm_up`)."""


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


#: PostgreSQL channel the outbox relay listens on; every write transaction notifies it
OUTBOX_CHANNEL = "pigeon_outbox"
#: PostgreSQL: how many batch sends commit at once (each on a writer of its own)
BATCH_WRITERS = 4
_NOTIFY_OUTBOX = text(f"NOTIFY {OUTBOX_CHANNEL}")
#: how often a batch looks its keys up again after a concurrent request took one
_BATCH_CLAIM_ROUNDS = 3
_Keyed = tuple[Notification, idempotency.IdempotentRequest | None]


@dataclass
class ReplayReport:
    """What a bulk replay did: ``(dead letter, notification)`` replayed, ``(id, why)`` skipped."""

    replayed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


#: the largest limit a setting takes (a quota past it is no quota)
MAX_LIMIT = 1_000_000_000_000


class Unset:
    """The "leave it as it is" of :meth:`SqlStore.set_limits`."""


UNSET = Unset()


class SqlStore:
    """The notification store on a SQLite file or a PostgreSQL database.

    ``outbox=False`` (embedded default, SQLite only): events go to the SQLite
    bus's own log table in the store's transaction. ``outbox=True``: events go
    to the ``outbox`` table, which the outbox relay publishes.

    ``intake=True`` (SQLite only, what ``bootstrap`` wires): accepted
    notifications, status callbacks and idempotency keys are written to the
    API's own intake file and moved into the store by :meth:`move_intake` (see
    :mod:`pigeon.store.intake`), so an accept never waits for a worker's commit.
    """

    def __init__(
        self,
        url: DatabaseUrl,
        *,
        outbox: bool = False,
        partitions: dict[str, int] | None = None,
        default_partitions: int = 8,
        synchronous: str = "NORMAL",
        on_commit: Callable[[], None] | None = None,
        on_topics: Callable[[frozenset[str]], None] | None = None,
        auto_migrate: bool = False,
        idempotency_ttl: timedelta = timedelta(hours=24),
        intake: bool = False,
    ) -> None:
        if not outbox and url.dialect != "sqlite":
            raise ValueError("only a SQLite store can write the embedded bus log")
        if intake and (outbox or url.dialect != "sqlite"):
            raise ValueError("only an embedded SQLite store has an intake file")
        self.url = url
        self.outbox = outbox
        self._auto_migrate = auto_migrate
        self._idempotency_ttl = idempotency_ttl
        # PostgreSQL's writer threads: accepts and the rest, callbacks, and the batches
        self._writer = writer_engine(url, synchronous=synchronous, writers=2 + BATCH_WRITERS)
        self._reader = reader_engine(url, synchronous=synchronous)
        self._log: EventLog = (
            OutboxEventLog() if outbox else SqliteEventLog(partitions or {}, default_partitions)
        )
        before_commit: Callable[[Connection], None] | None = None
        if outbox and url.dialect == "postgresql":

            def notify_relay(conn: Connection) -> None:
                conn.execute(_NOTIFY_OUTBOX)  # delivered at commit, once per transaction

            before_commit = notify_relay
        self._commits = GroupCommitter(
            self._writer,
            on_commit=on_commit,
            before_commit=before_commit,
            write_lock=FileWriteLock(url.path) if url.dialect == "sqlite" else None,
            on_topics=on_topics,
        )
        # PostgreSQL: provider callbacks commit on a connection of their own. They
        # take per-message locks the sender may hold; in the shared transaction
        # every accepted notification of the group waited for those locks too.
        # (SQLite has one writer at a time anyway: one committer.)
        self._callback_commits = (
            GroupCommitter(
                self._writer, on_commit=on_commit, before_commit=before_commit, name="callbacks"
            )
            if url.dialect == "postgresql"
            else self._commits
        )
        # PostgreSQL: batch sends commit on writers of their own, BATCH_WRITERS at a time.
        # A batch is a group already (up to 1,000 notifications) and the server takes
        # concurrent transactions; behind the one writer, each batch waited for the
        # previous one's commit, and under load the API idled while its statements
        # queued for a core (benchmarks/README.md, twelfth session).
        self._batch_commits = [
            GroupCommitter(
                self._writer, on_commit=on_commit, before_commit=before_commit, name="batches"
            )
            for _ in range(BATCH_WRITERS if url.dialect == "postgresql" else 0)
        ]
        self._batches_sent = 0
        self._keys = KeyCache(self._account_of_key)
        self._counted = metrics.notifications()  # None: metrics off
        self.intake_path: Path | None = None
        self._intake_commits: GroupCommitter | None = None
        self._intake_reader: AsyncEngine | None = None
        if intake:
            self.intake_path = intake_sql.intake_path(url.path)
            intake_url = DatabaseUrl(f"sqlite:///{self.intake_path}", "sqlite")
            # the API's commits ring the intake relay only, not the consumers: nothing
            # is in the log until the relay has moved it
            self._intake_signals = CommitSignals(self.intake_path, synchronous, self._intake_rung)
            self._intake_commits = GroupCommitter(
                writer_engine(intake_url, synchronous=synchronous),
                on_commit=self._intake_signals.committed,
                write_lock=FileWriteLock(self.intake_path),
                name="intake",
            )
            self._intake_reader = reader_engine(intake_url, synchronous=synchronous)
        self._intake_listeners: list[Callable[[], None]] = []
        # the intake relay's connection to the intake file, used in the writer thread only
        self._intake_conn: sqlite3.Connection | None = None

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        """Check (or bring) the schema up to date and start the group committer.

        Raises :class:`~pigeon.errors.SchemaNotMigrated` on a database that is
        behind, unless the store was made with ``auto_migrate``.
        """
        if self._auto_migrate:
            await asyncio.to_thread(migrate.upgrade, self.url)
        else:
            await asyncio.to_thread(migrate.check_current, self.url)
        if not self.outbox:
            try:
                await asyncio.to_thread(create_schema, self.url.path)
                if self.intake_path is not None:
                    await asyncio.to_thread(intake_sql.create_intake, self.intake_path)
            except (sqlite3.Error, SQLAlchemyError, OSError) as exc:
                raise StoreUnavailable(f"cannot open the database {self.url}: {exc}") from exc
        await self._commits.start()
        if self._intake_commits is not None:
            await self._intake_signals.start()
            await self._intake_commits.start()
        if self._callback_commits is not self._commits:
            await self._callback_commits.start()

    async def warm_up(self) -> None:
        """Open what the first requests would open, before any arrives: a reader
        connection (with the key lookup compiled) and each writer's connection. An API
        process calls this before it listens; without it the first request after a start
        waited 15-40 ms for connections and compiling, and those behind it queued."""
        await self._account_of_key("")  # no key has an empty hash
        writers = (self._commits, self._callback_commits, self._intake_commits)
        for committer in dict.fromkeys(c for c in writers if c is not None):  # each once
            await committer.submit(_nothing, quiet=True)

    async def stop(self) -> None:
        """Flush pending writes and close connections."""
        for committer in self._batch_commits:
            await committer.stop()
        if self._callback_commits is not self._commits:
            await self._callback_commits.stop()
        if self._intake_commits is not None:
            await self._intake_commits.stop()
            await self._intake_signals.stop()
        await self._commits.stop()
        if self._intake_conn is not None:  # the writer thread has finished with it
            self._intake_conn.close()
            self._intake_conn = None
        await self._reader.dispose()
        if self._intake_reader is not None:
            await self._intake_reader.dispose()

    async def submit_sqlite(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the writer's sqlite3 connection in a shared transaction.

        The embedded bus writes through this (see ``SqliteEventBus.attach_writer``),
        so a process has one writer and a worker's settle shares its commits.
        """
        return await self._commits.submit_sqlite(work)

    @contextlib.asynccontextmanager
    async def _read(self, engine: AsyncEngine | None = None) -> AsyncIterator[AsyncConnection]:
        """A reader connection (to the store, or ``engine``'s file); a database that does
        not answer is :class:`StoreUnavailable` (the API's 503), not a driver error (a 500)."""
        try:
            async with (engine or self._reader).connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database {self.url} does not answer: {exc}") from exc

    async def read_with(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on a reader connection of the store (operators' counts, metrics)."""
        async with self._read() as conn:
            return await conn.run_sync(fn)

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        try:
            async with self._reader.connect() as conn:
                await conn.execute(select(1))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database {self.url} does not answer: {exc}") from exc

    # -- the outbox (Kafka) ------------------------------------------------------
    async def outbox_batch(self, limit: int) -> list[outbox_sql.OutboxRow]:
        """The oldest unpublished events, in the order they were written."""
        try:
            return await outbox_sql.read_batch(self._reader, limit)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database {self.url} does not answer: {exc}") from exc

    async def outbox_delete(self, ids: list[int]) -> None:
        """Forget events the broker has acknowledged."""
        await outbox_sql.delete_rows(self._commits, ids)

    @contextlib.asynccontextmanager
    async def _outbox_claim(self, limit: int) -> AsyncIterator[list[outbox_sql.OutboxRow]]:
        """The oldest unpublished events, read, then deleted when the block ends without
        error (the relay on SQLite; on PostgreSQL its leadership's session claims)."""
        rows = await self.outbox_batch(limit)
        yield rows
        if rows:
            await self.outbox_delete([row.id for row in rows])

    def relay_leadership(self, poll_interval: float = 0.01) -> outbox_sql.Leadership:
        """How outbox relays on this database agree which one publishes, and claim rows."""
        if self.url.dialect == "postgresql":
            return outbox_sql.PostgresLeadership(self.url, OUTBOX_CHANNEL)
        return outbox_sql.FileLeadership(self.url, poll_interval, self._outbox_claim)

    # -- accounts and keys -----------------------------------------------------
    async def ensure_account(self, name: str) -> Account:
        """The account called ``name``, created if it does not exist."""
        if not name or len(name) > 200:
            raise ValidationError("account", "must be 1 to 200 characters")

        def work(conn: Connection) -> Account:
            row = (conn.execute(select(accounts).where(accounts.c.name == name))).first()
            if row is not None:
                return Account(row.id, row.name)
            account = Account("acc_" + ulid(), name)
            conn.execute(insert(accounts).values(id=account.id, name=name, created_at=utcnow()))
            return account

        return await self._commits.submit(work)

    async def create_api_key(
        self, account_name: str, *, admin: bool = False
    ) -> tuple[Account, str]:
        """A new API key for ``account_name`` (the account is created if needed).

        The key is returned once and only its hash is stored. An ``admin`` key
        may also operate the dead-letter queue.
        """
        account = await self.ensure_account(account_name)
        key = _new_key()
        await self._commits.submit(lambda conn: _insert_key(conn, account.id, key, admin))
        return Account(account.id, account.name, admin), key

    async def api_keys(self, account_name: str | None = None) -> list[ApiKeyView]:
        """Every API key (of ``account_name``'s account, if given), oldest first."""
        async with self._read() as conn:
            return await conn.run_sync(api_keys_sql.list_keys, account_name)

    async def revoke_api_key(self, key_id: str) -> ApiKeyView:
        """Revoke a key: this process refuses it at once, every other within
        :data:`KEY_CACHE_SECONDS`. ``NotFoundError``, or ``ConflictError`` when it was
        revoked before."""
        view, digest = await self._commits.submit(
            lambda conn: api_keys_sql.revoke(conn, key_id, utcnow())
        )
        self._keys.forget(digest)
        return view

    async def rotate_api_key(self, key_id: str) -> tuple[ApiKeyView, str]:
        """Replace an active key by a new one of the same account and kind, in one
        transaction: the old key's view (revoked) and the new key, shown only once."""
        key = _new_key()

        def work(conn: Connection) -> tuple[ApiKeyView, str]:
            old, digest = api_keys_sql.revoke(conn, key_id, utcnow())
            _insert_key(conn, old.account_id, key, old.is_admin)
            return old, digest

        old, digest = await self._commits.submit(work)
        self._keys.forget(digest)
        return old, key

    async def set_limits(
        self,
        account_name: str,
        *,
        rate_per_second: int | Unset | None = UNSET,
        rate_burst: int | Unset | None = UNSET,
        monthly_segment_quota: int | Unset | None = UNSET,
    ) -> Account:
        """Change an account's limits (``None`` removes one, :data:`UNSET` keeps it); every
        API process applies them within :data:`KEY_CACHE_SECONDS`. ``NotFoundError`` for an
        unknown account, ``ValidationError`` for a value out of range."""
        changes = {
            name: value
            for name, value in (
                ("rate_per_second", rate_per_second),
                ("rate_burst", rate_burst),
                ("monthly_segment_quota", monthly_segment_quota),
            )
            if not isinstance(value, Unset)
        }
        for name, value in changes.items():
            if value is not None and not 1 <= value <= MAX_LIMIT:
                raise ValidationError(name, f"must be 1 to {MAX_LIMIT:,} (or none)")

        def work(conn: Connection) -> Account:
            if changes:
                conn.execute(update(accounts).where(accounts.c.name == account_name), changes)
            row = conn.execute(select(accounts).where(accounts.c.name == account_name)).first()
            if row is None:
                raise NotFoundError(f"no account {account_name!r}")
            return Account(row.id, row.name, limits=limits_of(row))

        account = await self._commits.submit(work)
        self._keys.clear()  # this process at once; the others within a second
        return account

    async def account_named(self, name: str) -> Account:
        """The account called ``name`` with its limits, or ``NotFoundError``."""
        async with self._read() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.name == name))).first()
        if row is None:
            raise NotFoundError(f"no account {name!r}")
        return Account(row.id, row.name, limits=limits_of(row))

    async def segments_since(self, account_id: str, start: date) -> int:
        """SMS segments the usage meter has counted for ``account_id`` from ``start`` on."""
        async with self._read() as conn:
            total = (
                await conn.execute(
                    select(func.coalesce(func.sum(usage_daily.c.segments), 0)).where(
                        usage_daily.c.account_id == account_id, usage_daily.c.day >= start
                    )
                )
            ).scalar_one()
        return int(total)

    async def authenticate(self, key: str) -> Account | None:
        """The account an API key belongs to, or None (:mod:`pigeon.store.key_cache`)."""
        return await self._keys.account(hash_key(key))

    async def _account_of_key(self, digest: str) -> Account | None:
        """Ask the database whose active key has hash ``digest``."""
        async with self._read() as conn:
            row = (await conn.execute(_AUTHENTICATE, {"digest": digest})).first()
        if row is None:
            return None
        return Account(row.id, row.name, bool(row.is_admin), limits_of(row))

    # -- notifications -----------------------------------------------------------
    async def accept(self, notification: Notification) -> None:
        """Store a new notification with its request event, in one transaction."""
        if self._intake_commits is not None:
            params = self._intake_params([notification])
            await self._intake_commits.write([(intake_sql.INSERT_INTAKE, params)])
        elif self.url.dialect == "postgresql":
            # one statement for the group's rows and the relay's NOTIFY (pg_statements)
            await self._commits.merged(
                self._accept_postgres, notification, quiet=True, one_statement=True
            )
        else:
            await self._commits.write(
                [
                    (_INSERT_NOTIFICATION, [notification_values(notification)]),
                    (self._log.statement, self._log.rows([notification.requested_event()])),
                ]
            )
        if self._counted is not None:
            self._counted.accepted.inc()

    def _accept_postgres(self, conn: Connection, accepted: list[Notification]) -> list[None]:
        """A group of accepted notifications: rows, events and NOTIFY in one statement.

        The statement carries the notifications' rows alone; the server writes
        each one's request event from them (:data:`_PG_ACCEPTED_DERIVED`),
        unless an event continues a trace (its headers carry the trace: then
        Python writes the events). No timeline row: the first step is read from
        the notification itself (:func:`_timeline_of`).
        """
        rows = [notification_values(n) for n in accepted]
        if any(n.trace is not None for n in accepted):
            pg_statements.insert_rows(
                conn,
                [
                    (notifications, rows),
                    (outbox, self._log.rows([n.requested_event() for n in accepted])),
                ],
                notify=OUTBOX_CHANNEL,
            )
        else:
            pg_statements.insert_with_derived(
                conn,
                notifications,
                rows,
                _PG_ACCEPTED_DERIVED,
                params=_PG_ACCEPTED_PARAMS,
                notify=OUTBOX_CHANNEL,
            )
        return [None] * len(accepted)

    async def accept_idempotent(
        self, notification: Notification, request: idempotency.IdempotentRequest
    ) -> idempotency.IdempotentRecord | None:
        """Store ``notification`` and claim ``request``'s key, in one transaction.

        Returns None when stored; when the key was already used (by an earlier
        or a concurrent request) nothing is stored and the first request's
        record is returned instead.
        """
        ttl = self._idempotency_ttl
        found = await self.find_idempotent(request.account_id, request.key)
        if found is not None:
            return found

        def work(conn: Connection) -> None:
            idempotency.claim(conn, request, notification.id, ttl)
            self._insert_accepted(conn, [notification])

        try:
            await (self._intake_commits or self._commits).submit(work)
        except KeyAlreadyUsed:
            # a concurrent request with the same key won; answer as it was answered
            for _ in range(50):
                found = await self.find_idempotent(request.account_id, request.key)
                if found is not None:
                    return found
                await asyncio.sleep(0.01)
            raise
        if self._counted is not None:
            self._counted.accepted.inc()
        return None

    def _intake_params(self, accepted: Sequence[Notification]) -> list[tuple[Any, ...]]:
        log = self._log
        assert isinstance(log, SqliteEventLog)  # the intake file exists on SQLite only
        return [intake_sql.accepted_params(n, log) for n in accepted]

    def _insert_accepted(self, conn: Connection, accepted: Sequence[Notification]) -> None:
        """Rows and request events of ``accepted`` in ``conn``'s transaction (claims apart)."""
        if not accepted:
            return
        if self._intake_commits is not None:
            sqlite_rows.insert_many(conn, intake_sql.INSERT_INTAKE, self._intake_params(accepted))
            return
        if conn.dialect.name == "postgresql":
            self._accept_postgres(conn, list(accepted))  # one statement, however many
            return
        conn.execute(_INSERT_NOTIFICATION, [notification_values(n) for n in accepted])
        append(self._log, conn, [n.requested_event() for n in accepted])

    async def accept_batch(
        self, items: Sequence[tuple[Notification, idempotency.IdempotentRequest | None]]
    ) -> list[idempotency.IdempotentRecord | None]:
        """Store every item, with its key's claim if it has one, all in one transaction.

        Per item: None when stored; when its key was already used, the first
        request's record (and nothing stored for the item). Keys must be
        distinct within ``items``; the caller answers repeats itself.
        """
        claims = [claim for _, claim in items if claim is not None]
        keys = [claim.key for claim in claims]
        if len(set(keys)) != len(keys):
            raise ValueError("an idempotency key appears twice in one batch")
        ttl = self._idempotency_ttl
        for _ in range(_BATCH_CLAIM_ROUNDS):
            earlier = await self._find_idempotent_many(claims[0].account_id if claims else "", keys)
            fresh = [(n, c) for n, c in items if c is None or c.key not in earlier]

            def work(conn: Connection, fresh: list[_Keyed] = fresh) -> None:
                for notification, claim in fresh:
                    if claim is not None:
                        idempotency.claim(conn, claim, notification.id, ttl)
                self._insert_accepted(conn, [n for n, _ in fresh])

            try:
                if fresh:
                    await (await self._batch_committer()).submit(work)
            except KeyAlreadyUsed:
                continue  # a concurrent request took one of the keys meanwhile: look again
            if self._counted is not None and fresh:
                self._counted.accepted.inc(len(fresh))
            return [earlier.get(c.key) if c is not None else None for _, c in items]
        raise StoreUnavailable(
            "the batch's idempotency keys kept being claimed by concurrent requests; retry it"
        )

    async def _batch_committer(self) -> GroupCommitter:
        """Where the next batch commits: the batch writers in turn (PostgreSQL; each
        started on first use, so a worker process runs none), else the accepts' committer."""
        if not self._batch_commits:
            return self._intake_commits or self._commits
        self._batches_sent += 1
        committer = self._batch_commits[self._batches_sent % len(self._batch_commits)]
        if not committer.started:
            await committer.start()
        return committer

    async def _find_idempotent_many(
        self, account_id: str, keys: list[str]
    ) -> dict[str, idempotency.IdempotentRecord]:
        if not keys:
            return {}
        async with self._read(self._intake_reader) as conn:
            return await conn.run_sync(
                idempotency.find_many, account_id, keys, self._idempotency_ttl
            )

    async def find_idempotent(
        self, account_id: str, key: str
    ) -> idempotency.IdempotentRecord | None:
        """The live record of an idempotency key, if any."""
        async with self._read(self._intake_reader) as conn:
            return await conn.run_sync(idempotency.find, account_id, key, self._idempotency_ttl)

    async def append_events(self, events: Sequence[Event]) -> None:
        """Publish events through the log, durably."""
        await self._commits.write([(self._log.statement, self._log.rows(events))])

    async def get_view(self, account_id: str, notification_id: str) -> NotificationView | None:
        """The notification with its timeline, if it belongs to ``account_id``."""
        view = await self._stored_view(account_id, notification_id)
        if view is not None or self._intake_reader is None:
            return view
        # not moved from the intake file yet; or moved (and forgotten there) meanwhile
        async with self._read(self._intake_reader) as conn:
            row = (
                await conn.execute(
                    select(intake_sql.intake_notifications).where(
                        intake_sql.intake_notifications.c.id == notification_id,
                        intake_sql.intake_notifications.c.account_id == account_id,
                    )
                )
            ).first()
        if row is None:
            return await self._stored_view(account_id, notification_id)
        view = _intake_view(row)
        return dataclasses.replace(view, timeline=_timeline_of(view.notification, []))

    async def list_notifications(
        self,
        account_id: str,
        filt: listing.NotificationFilter,
        *,
        limit: int,
        after: listing.Cursor | None = None,
    ) -> list[NotificationView]:
        """A page of the account's notifications, newest first, after ``after`` (timelines
        left out). On the embedded stack the ones the API accepted a moment ago and the
        intake relay has not moved yet are in it too.

        The intake file is read first, then the store: the relay forgets an intake row
        only after the store has it, so a row moved between the two reads is in the
        second. (Store first, a row moved and forgotten in between was in neither, and
        a page could skip a notification its caller had just sent.)
        """
        dialect = self.url.dialect
        views: dict[str, NotificationView] = {}
        if self._intake_reader is not None and filt.status in (None, NotificationStatus.ACCEPTED):
            table = intake_sql.intake_notifications
            query = listing.page_query(
                table, account_id, filt, after=after, limit=limit, dialect=dialect
            )
            async with self._read(self._intake_reader) as conn:
                waiting = (await conn.execute(query)).all()
            views = {row.id: _intake_view(row) for row in waiting}
        query = listing.page_query(
            notifications, account_id, filt, after=after, limit=limit, dialect=dialect
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        for row in rows:  # a row moved meanwhile is in both: the store's is newer
            views[row.id] = _view_of(row)
        ordered = sorted(
            views.values(),
            key=lambda v: (v.notification.created_at, v.notification.id),
            reverse=True,
        )
        return ordered[:limit]

    async def _stored_view(self, account_id: str, notification_id: str) -> NotificationView | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(notifications).where(
                        notifications.c.id == notification_id,
                        notifications.c.account_id == account_id,
                    )
                )
            ).first()
            if row is None:
                return None
            entries = (
                await conn.execute(
                    select(timeline.c.status, timeline.c.at, timeline.c.detail)
                    .where(timeline.c.notification_id == notification_id)
                    .order_by(timeline.c.at, timeline.c.id)
                )
            ).all()
        return _view_of(row, [TimelineEntry(e.status, utc(e.at), e.detail) for e in entries])

    async def record_delivery_report(self, report: DeliveryReport) -> bool:
        """Turn a provider's delivery report (a status callback) into an event, atomically.

        Returns False when no notification has the report's message id yet;
        the report is then kept and applied once the sender records the id
        (see :meth:`finish_attempts`), since providers may call back before
        our own write of that id commits. With an intake file the report is
        only appended there (True): the intake relay applies or keeps it.

        Only a final report is news (True for the others, writing nothing): a
        message id is recorded only by the sender's journal, in the transaction
        that publishes its own ``SmsSent`` for it, so a "sent" report found its
        notification already sent, and a "pending" one says nothing at all.
        Writing them cost a look-up, per-message locks the sender's journal
        waits on (the provider calls back before that commits) and a kept row.
        """
        if not report.is_final:
            return True
        if self._intake_commits is not None:
            # applied when the intake relay moves it (kept there if its id is not known yet)
            row = (report.to_json(),)
            await self._intake_commits.write([(intake_sql.INSERT_INTAKE_CALLBACK, [row])])
            return True
        # PostgreSQL: apply_callbacks notifies the relay in its own insert statement
        quiet = self.url.dialect == "postgresql"
        return bool(await self._callback_commits.merged(self.apply_callbacks, report, quiet=quiet))

    # -- the intake file (embedded default) ----------------------------------------
    async def move_intake(self, limit: int = 512) -> intake_sql.Moved:
        """Move up to ``limit`` accepted notifications and callbacks from the intake file
        into the store, in one transaction with the relay's position (exactly once)."""
        path = self.intake_path
        if path is None:
            raise ValueError("this store has no intake file")

        def work(conn: Connection) -> intake_sql.Moved:
            if self._intake_conn is None:  # in the writer thread: it alone uses it
                self._intake_conn = sqlite3.connect(
                    path, isolation_level=None, check_same_thread=False
                )
            return intake_sql.move_chunk(conn, self._intake_conn, self.apply_callbacks, limit)

        return await self._commits.submit(work)

    async def cancel(self, account_id: str, notification_id: str, *, projector: str) -> bool:
        """Cancel a notification no provider was handed yet; False if it already was canceled.

        One transaction: the intake file's rows are moved first (a notification
        accepted a moment ago is canceled too), attempt 1 is taken as ``canceled``
        in the sender's journal (no sender opens one from then on; one that
        opened it first wins, and this is a :class:`ConflictError`), and the
        ``SmsCanceled`` event is published and projected at once as
        ``projector`` would project it (so the next read shows it, and the
        projector, finding it processed, skips it). Unknown ids, or another
        account's, are a :class:`NotFoundError`.
        """
        path = self.intake_path

        def work(conn: Connection) -> bool:
            if path is not None:
                intake_sql.move_all(conn, path, self.apply_callbacks)
            status = conn.execute(
                select(notifications.c.status).where(
                    notifications.c.id == notification_id,
                    notifications.c.account_id == account_id,
                )
            ).scalar()
            if status is None:
                raise NotFoundError(f"no notification {notification_id!r} in this account")
            if status == NotificationStatus.CANCELED:
                return False  # canceling twice changes nothing
            if NotificationStatus(status).is_final:
                raise ConflictError(f"notification {notification_id} is already {status}")
            if not attempts.cancel(conn, notification_id):
                raise ConflictError(
                    f"notification {notification_id} was already handed to a provider "
                    "(an attempt has started); it can no longer be canceled"
                )
            event = SmsCanceled(account_id=account_id, notification_id=notification_id)
            append(self._log, conn, [event])
            finals.clear()  # a shared transaction that failed is retried alone
            projection.project_status(conn, projector, [event], finals)
            return True

        finals: list[projection.FinalState] = []
        canceled = await self._commits.submit(work)
        projection.FinalState.log_all(finals)  # committed now
        if self._counted is not None:
            self._counted.finished(final.status for final in finals)
        return canceled

    async def listen_intake(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every commit to the intake file, in any process."""
        if self._intake_commits is None:
            raise ValueError("this store has no intake file")
        self._intake_listeners.append(listener)
        await self._intake_signals.listen()

    def _intake_rung(self, _topics: Topics) -> None:  # the intake file has no topics
        for listener in self._intake_listeners:
            listener()

    async def intake_heads(self) -> tuple[int, int]:
        """The newest intake rows: ``(notification seq, callback seq)``, 0 when none."""
        if self._intake_reader is None:
            raise ValueError("this store has no intake file")
        async with self._read(self._intake_reader) as conn:
            row = (await conn.execute(_INTAKE_HEADS)).one()
        return int(row[0] or 0), int(row[1] or 0)

    async def forget_moved_intake(self, moved: intake_sql.Moved) -> int:
        """Delete intake rows up to ``moved``'s positions (the store has them)."""
        if self._intake_commits is None:
            raise ValueError("this store has no intake file")

        def work(conn: Connection) -> int:
            raw = conn.connection.driver_connection
            assert isinstance(raw, sqlite3.Connection)
            return intake_sql.forget(raw, moved.notifications_seq, moved.callbacks_seq)

        return await self._intake_commits.submit(work, quiet=True)

    def apply_callbacks(self, conn: Connection, reports: list[DeliveryReport]) -> list[bool]:
        """Every delivery report of a group commit, set-based: one look-up, one insert
        each way; a report whose message id no attempt recorded yet is kept."""
        sids = [r.provider_message_id for r in reports]
        _lock_message_ids(conn, [sid for sid in sids if sid])
        owners = _notifications_for_messages(conn, sids)
        events: list[Event] = []
        pending: list[dict[str, object]] = []
        found: list[bool] = []
        now = utcnow()
        for report in reports:
            owner = owners.get(report.provider_message_id)
            found.append(owner is not None)
            if owner is None:
                pending.append(
                    {
                        "provider_message_id": report.provider_message_id,
                        "params": report.to_json(),
                        "received_at": now,
                    }
                )
                continue
            # the provider and attempt the journal recorded: with a failover list the
            # report comes from whichever provider sent it, not the default one
            event = report.event(
                owner.account_id,
                owner.notification_id,
                provider=owner.provider,
                attempt=owner.attempt,
            )
            if event is not None:
                events.append(event)
        if conn.dialect.name == "postgresql":
            # one statement; it notifies the relay (record_delivery_report's commit is quiet)
            pg_statements.insert_rows(
                conn,
                [(pending_callbacks, pending), (outbox, self._log.rows(events))],
                notify=OUTBOX_CHANNEL if events else None,
            )
            return found
        if pending:
            conn.execute(_INSERT_PENDING, pending)
        append(self._log, conn, events)
        return found

    # -- the sender's journal ----------------------------------------------------
    async def begin_attempts(
        self,
        requests: Sequence[tuple[str, str]],
        events: Callable[[list[attempts.AttemptStart]], Sequence[Event]],
    ) -> list[attempts.AttemptStart]:
        """Open attempts and publish the events ``events(starts)`` returns, atomically."""

        starts: list[attempts.AttemptStart] = await self._commits.merged(
            self._begin_attempts, (list(requests), events)
        )
        return starts

    def _begin_attempts(
        self,
        conn: Connection,
        items: list[
            tuple[
                list[tuple[str, str]],
                Callable[[list[attempts.AttemptStart]], Sequence[Event]],
            ]
        ],
    ) -> list[list[attempts.AttemptStart]]:
        """Every sender batch of a group commit, set-based."""
        starts = attempts.begin_attempts(conn, [r for requests, _ in items for r in requests])
        per_item: list[list[attempts.AttemptStart]] = []
        published: list[Event] = []
        for requests, events in items:
            mine, starts = starts[: len(requests)], starts[len(requests) :]
            per_item.append(mine)
            published.extend(events(mine))
        append(self._log, conn, published)
        return per_item

    async def finish_attempts(
        self,
        results: Sequence[attempts.AttemptResult],
        events: Sequence[Event],
        dead_letters: Sequence[RawRecord] = (),
    ) -> None:
        """Record outcomes and publish their events (and dead letters), atomically.

        A dead letter written here, with the failure it reports, exists exactly
        when the failure does: a worker killed before settling its batch finds
        the failure journaled and neither fails nor dead-letters it again.
        """

        await self._commits.merged(
            self._finish_attempts, (list(results), list(events), list(dead_letters))
        )

    def _finish_attempts(
        self,
        conn: Connection,
        items: list[tuple[list[attempts.AttemptResult], list[Event], list[RawRecord]]],
    ) -> list[None]:
        """Every sender's outcomes of a group commit, set-based."""
        results = [r for item in items for r in item[0]]
        events = [e for item in items for e in item[1]]
        dead_letters = [d for item in items for d in item[2]]
        _lock_message_ids(
            conn,
            [r.provider_message_id for r in results if r.provider_message_id]
            + [e.provider_message_id for e in events if isinstance(e, SmsSent)],
        )
        attempts.finish_attempts(conn, results)
        append(self._log, conn, events, dead_letters)
        append(self._log, conn, _claim_pending_callbacks(conn, events))
        return [None] * len(items)

    async def message_owner(self, provider_message_id: str) -> str | None:
        """The notification an attempt recorded ``provider_message_id`` for, if any."""
        async with self._read() as conn:
            found = await conn.run_sync(_notification_for_message, provider_message_id)
        return found[1] if found is not None else None

    async def stale_sent(
        self, *, older_than: datetime, newer_than: datetime, limit: int = 200
    ) -> list[tuple[str, str, str]]:
        """``(notification, provider message id, provider)`` of notifications still
        ``sent`` since before ``older_than``: their final callback may have been lost."""
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(
                        notifications.c.id,
                        notifications.c.provider_message_id,
                        notifications.c.provider,
                    )
                    .where(
                        notifications.c.status == "sent",
                        notifications.c.updated_at < older_than,
                        notifications.c.updated_at > newer_than,
                        notifications.c.provider_message_id.is_not(None),
                    )
                    .order_by(notifications.c.updated_at)
                    .limit(limit)
                )
            ).all()
        return [(r.id, r.provider_message_id, r.provider or "") for r in rows]

    # -- dead letters --------------------------------------------------------------
    async def record_dead_letters(self, messages: Sequence[Message]) -> int:
        """Copy dead-letter topic messages into ``dead_letters`` (idempotent)."""

        def work(conn: Connection) -> int:
            return dlq.record(conn, messages)

        return await self._commits.submit(work)

    async def dead_letters(
        self, *, since: datetime | None = None, include_replayed: bool = True, limit: int = 100
    ) -> list[dlq.DeadLetterView]:
        """Dead letters, oldest first."""
        async with self._read() as conn:
            return await conn.run_sync(
                lambda sync: dlq.listing(
                    sync, since=since, include_replayed=include_replayed, limit=limit
                )
            )

    async def dead_letter(self, dead_letter_id: str) -> dlq.DeadLetterView | None:
        """One dead letter by id."""
        async with self._read() as conn:
            return await conn.run_sync(dlq.get, dead_letter_id)

    async def replay_dead_letters(self, since: datetime | None = None) -> ReplayReport:
        """Replay every dead letter not replayed yet (dead since ``since``), one by one."""
        report = ReplayReport()
        for letter in await self.dead_letters(since=since, include_replayed=False, limit=100_000):
            try:
                report.replayed.append((letter.id, await self.replay_dead_letter(letter.id)))
            except (ConflictError, NotFoundError) as exc:
                report.skipped.append((letter.id, str(exc)))
        return report

    async def replay_dead_letter(self, dead_letter_id: str) -> str:
        """Re-queue a dead letter's notification and publish its request again, atomically.

        Returns the notification id; raises NotFoundError or ConflictError.
        """

        def work(conn: Connection) -> str:
            event = dlq.replay(conn, dead_letter_id)
            append(self._log, conn, [event])
            return event.notification_id

        return await self._commits.submit(work)

    # -- projections -------------------------------------------------------------
    async def project_status(self, consumer: str, events: Sequence[Event]) -> int:
        """Apply status events forward-only, exactly once per event id."""

        # with an outbox, a projection publishes nothing: its commit need not wake the relay
        changed, finals = await self._commits.merged(
            self._project, (consumer, list(events)), quiet=self.outbox
        )
        projection.FinalState.log_all(finals)  # committed now
        if self._counted is not None:
            self._counted.finished(final.status for final in finals)
        return int(changed)

    @staticmethod
    def _project(
        conn: Connection, items: list[tuple[str, list[Event]]]
    ) -> list[tuple[int, list[projection.FinalState]]]:
        """Every projector batch of a group commit, set-based; each caller learns how many
        notifications the shared commit changed for its consumer (and the first caller
        the notifications it made final, to log them once)."""
        by_consumer: dict[str, list[Event]] = {}
        for consumer, events in items:
            by_consumer.setdefault(consumer, []).extend(events)
        finals: list[projection.FinalState] = []
        changed = {c: projection.project_status(conn, c, e, finals) for c, e in by_consumer.items()}
        return [(changed[c], finals if i == 0 else []) for i, (c, _) in enumerate(items)]

    async def meter_usage(self, consumer: str, events: Sequence[SmsRequested]) -> int:
        """Count usage exactly once per event id."""

        return int(
            await self._commits.merged(self._meter, (consumer, list(events)), quiet=self.outbox)
        )

    @staticmethod
    def _meter(conn: Connection, items: list[tuple[str, list[SmsRequested]]]) -> list[int]:
        """Every meter batch of a group commit, set-based; each caller learns how many of
        its events were counted now (an event in two batches counts for the first)."""
        by_consumer: dict[str, list[SmsRequested]] = {}
        for consumer, events in items:
            by_consumer.setdefault(consumer, []).extend(events)
        fresh = {
            c: {e.event_id for e in projection.meter_fresh(conn, c, e)}
            for c, e in by_consumer.items()
        }
        counts = []
        for consumer, events in items:
            mine = {e.event_id for e in events} & fresh[consumer]
            fresh[consumer] -= mine
            counts.append(len(mine))
        return counts

    async def usage(self, account_id: str, start: date, end: date) -> list[UsageDay]:
        """Usage per day from ``start`` to ``end`` inclusive, days without usage as zero."""
        if end < start:
            raise ValidationError("to", "must not be before 'from'")
        if (end - start).days + 1 > MAX_USAGE_DAYS:
            raise ValidationError("to", f"a range covers at most {MAX_USAGE_DAYS} days")
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(usage_daily.c.day, usage_daily.c.messages, usage_daily.c.segments).where(
                        usage_daily.c.account_id == account_id,
                        usage_daily.c.day >= start,
                        usage_daily.c.day <= end,
                    )
                )
            ).all()
        found = {r.day: r for r in rows}
        days = []
        for offset in range((end - start).days + 1):
            day = start + timedelta(days=offset)
            row = found.get(day)
            days.append(UsageDay(day, row.messages if row else 0, row.segments if row else 0))
        return days

    # -- retention (one bounded chunk per call; see pigeon.store.retention) -------
    async def purge_processed_events(self, *, before: datetime, limit: int) -> int:
        """Forget up to ``limit`` processed event ids of events created before ``before``."""
        return await self._purge(retention.purge_processed_events, before, limit)

    async def purge_pending_callbacks(self, *, before: datetime, limit: int) -> int:
        """Drop up to ``limit`` unclaimed status callbacks received before ``before``."""
        return await self._purge(retention.purge_pending_callbacks, before, limit)

    async def purge_idempotency_keys(self, *, now: datetime, limit: int) -> int:
        """Drop up to ``limit`` idempotency keys past their TTL at ``now``."""
        before = now - self._idempotency_ttl
        commits = self._intake_commits or self._commits  # the keys live with the intake
        return await commits.submit(
            lambda conn: retention.purge_idempotency_keys(conn, before, limit), quiet=True
        )

    async def purge_notifications(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` final notifications last changed before ``before``, with
        their timeline and attempts; returns how many notifications."""
        return await self._purge(retention.purge_notifications, before, limit)

    @property
    def keeps_planner_statistics(self) -> bool:
        """Whether :meth:`refresh_statistics` has work to do (on PostgreSQL)."""
        return self.url.dialect == "postgresql"

    async def refresh_statistics(self) -> list[str]:
        """``ANALYZE`` the tables that changed enough since their last one (PostgreSQL;
        see :mod:`pigeon.store.planner_statistics`); returns their names."""
        if not self.keeps_planner_statistics:
            return []
        async with self._read() as conn:
            tables = await conn.run_sync(planner_statistics.refresh)
            await conn.commit()
        return tables

    async def _purge(
        self, chunk: Callable[[Connection, datetime, int], int], before: datetime, limit: int
    ) -> int:
        # quiet: a purge publishes nothing, so its commit wakes no consumer
        return await self._commits.submit(lambda conn: chunk(conn, before, limit), quiet=True)

    # -- status webhooks (see pigeon.store.webhooks) -------------------------------
    @functools.cached_property
    def webhooks(self) -> WebhookStore:
        """Webhook endpoints and deliveries, on this store's committer and readers."""
        return WebhookStore(self._commits, self.read_with, self.url.dialect)


def _view_of(row: Row[Any], timeline: list[TimelineEntry] | None = None) -> NotificationView:
    """The view of a ``notifications`` row, with ``timeline`` (the stored steps, if given:
    the first step, which is the row itself, goes before them)."""
    notification = notification_from_row(row)
    return NotificationView(
        notification=notification,
        attempts=row.attempts,
        provider=row.provider,
        provider_message_id=row.provider_message_id,
        last_error=row.last_error,
        updated_at=utc(row.updated_at),
        timeline=_timeline_of(notification, timeline) if timeline is not None else [],
        next_attempt_at=utc(row.next_attempt_at) if row.next_attempt_at is not None else None,
    )


def _intake_view(row: Row[Any]) -> NotificationView:
    """The view of a notification the API accepted that is still in its intake file."""
    accepted = notification_from_row(row)
    return NotificationView(
        notification=accepted,
        attempts=0,
        provider=None,
        provider_message_id=None,
        last_error=None,
        updated_at=accepted.created_at,
    )


#: an accepted notification's first timeline step
_ACCEPTED_STATUS, _ACCEPTED_DETAIL = "accepted", "accepted by the API"


def _timeline_of(notification: Notification, stored: list[TimelineEntry]) -> list[TimelineEntry]:
    """A notification's whole timeline: its first step, then the ``stored`` ones.

    The first step ("accepted by the API", at ``created_at``) is the
    notification row itself, so no row is written for it: one row (and two
    index entries) less per accepted notification, on the hottest write there
    is (batches of 500 on PostgreSQL: 13-21 % less of the server's CPU per
    notification). Rows stored for it by earlier versions are skipped, so a
    notification never shows it twice.
    """
    first = TimelineEntry(_ACCEPTED_STATUS, notification.created_at, _ACCEPTED_DETAIL)
    return [first, *(step for step in stored if step.status != _ACCEPTED_STATUS)]


#: PostgreSQL: a ``timestamptz`` column ``created_at`` as ``format_time`` writes it
_PG_OCCURRED_AT = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#: PostgreSQL: what an accepted notification's row gives the outbox: the request event
#: as ``OutboxEventLog.rows`` writes it
_PG_ACCEPTED_DERIVED: tuple[pg_statements.Derived, ...] = (
    (
        outbox,
        (
            ("topic", "%(topic)s"),
            ("key", "recipient"),  # as ``route`` keys a request: by recipient
            (
                "value",
                f"convert_to({request_event_sql('json_build_object', _PG_OCCURRED_AT)}::text, "
                "'UTF8')",
            ),
            ("headers", "%(headers)s"),
            ("created_at", "now()"),
        ),
    ),
)
_PG_ACCEPTED_PARAMS = {
    "topic": TOPIC_SMS_REQUESTED,
    "headers": REQUEST_HEADERS,
}


#: PostgreSQL advisory-lock class of provider message ids ("PIGM"), see _lock_message_ids
_MESSAGE_LOCK_CLASS = 0x5049_474D
#: every id's lock in one round trip, in ascending key order (one order everywhere:
#: no deadlocks, even when two ids hash alike); the ordered subquery fixes the order
_LOCK_MESSAGE_IDS = (
    "SELECT pg_advisory_xact_lock(%(lock_class)s, k)"
    " FROM (SELECT DISTINCT hashtext(m) AS k FROM unnest(%(ids)s::text[]) AS m"
    " ORDER BY k) AS keys"
)


def _lock_message_ids(conn: Connection, message_ids: Sequence[str]) -> None:
    """Order, per provider message id, recording the id and keeping an early callback.

    On PostgreSQL the callback's transaction and the sender's transaction that
    records the id can overlap: neither sees the other's uncommitted row, so the
    callback would be kept forever and the notification never leave "sent". A
    transaction-scoped advisory lock per id makes the later one wait; it then sees
    the earlier one's commit (READ COMMITTED reads what was committed before each
    statement). SQLite needs none: its writers never overlap.
    """
    if conn.dialect.name != "postgresql":
        return
    if message_ids:
        pg_statements.execute(
            conn,
            _LOCK_MESSAGE_IDS,
            {"lock_class": _MESSAGE_LOCK_CLASS, "ids": list(set(message_ids))},
        )


def _notification_for_message(conn: Connection, message_id: str) -> tuple[str, str] | None:
    """``(account_id, notification_id)`` the provider calls ``message_id``, if known."""
    if not message_id:
        return None
    row = (
        conn.execute(
            select(notifications.c.account_id, notifications.c.id)
            .join(send_attempts, send_attempts.c.notification_id == notifications.c.id)
            .where(send_attempts.c.provider_message_id == message_id)
        )
    ).first()
    return (row.account_id, row.id) if row is not None else None


_OWNERS = (
    select(
        send_attempts.c.provider_message_id,
        notifications.c.account_id,
        notifications.c.id,
        send_attempts.c.provider,
        send_attempts.c.attempt,
    )
    .join(send_attempts, send_attempts.c.notification_id == notifications.c.id)
    .where(send_attempts.c.provider_message_id.in_(bindparam("ids", expanding=True)))
)


#: _OWNERS on the driver's connection (the callback path's hot read)
_OWNERS_POSTGRES = (
    "SELECT a.provider_message_id, n.account_id, n.id, a.provider, a.attempt"
    " FROM send_attempts AS a"
    " JOIN notifications AS n ON n.id = a.notification_id"
    " WHERE a.provider_message_id = ANY(%(ids)s::text[])"
)


class _Sender(NamedTuple):
    """Who a provider message id belongs to, and which attempt (and provider) sent it."""

    account_id: str
    notification_id: str
    provider: str
    attempt: int


def _notifications_for_messages(conn: Connection, message_ids: Sequence[str]) -> dict[str, _Sender]:
    """``message id -> its sender`` for the ids recorded so far."""
    wanted = list({m for m in message_ids if m})
    if not wanted:
        return {}
    if conn.dialect.name == "postgresql":
        found = pg_statements.execute(conn, _OWNERS_POSTGRES, {"ids": wanted})
    else:
        found = [tuple(r) for r in conn.execute(_OWNERS, {"ids": wanted}).all()]
    return {sid: _Sender(*rest) for sid, *rest in found}


# built once: the sender runs them in every journal transaction
_PENDING_FOR = (
    select(
        pending_callbacks.c.id, pending_callbacks.c.provider_message_id, pending_callbacks.c.params
    )
    .where(pending_callbacks.c.provider_message_id.in_(bindparam("ids", expanding=True)))
    .order_by(pending_callbacks.c.id)
)
_DELETE_PENDING = delete(pending_callbacks).where(
    pending_callbacks.c.id.in_(bindparam("ids", expanding=True))
)


_CLAIM_PENDING_POSTGRES = (
    "DELETE FROM pending_callbacks WHERE provider_message_id = ANY(%(ids)s::text[])"
    " RETURNING id, provider_message_id, params"
)


def _claim_pending_callbacks(conn: Connection, events: Sequence[Event]) -> list[Event]:
    """Events of callbacks that arrived before their message id was recorded."""
    sent = {e.provider_message_id: e for e in events if isinstance(e, SmsSent)}
    if not sent:
        return []
    if conn.dialect.name == "postgresql":
        # read and deleted in one round trip; RETURNING keeps no order: by id, as they came
        rows = sorted(pg_statements.execute(conn, _CLAIM_PENDING_POSTGRES, {"ids": list(sent)}))
    else:
        rows = [tuple(r) for r in conn.execute(_PENDING_FOR, {"ids": list(sent)}).all()]
        if rows:
            conn.execute(_DELETE_PENDING, {"ids": [r[0] for r in rows]})
    claimed = []
    for _, message_id, params in rows:
        origin = sent[message_id]
        event = DeliveryReport.from_json(params).event(
            origin.account_id,
            origin.notification_id,
            provider=origin.provider,
            attempt=origin.attempt,
        )
        if event is not None:
            claimed.append(event)
    return claimed


_AUTHENTICATE = (
    select(
        accounts.c.id,
        accounts.c.name,
        api_keys.c.is_admin,
        accounts.c.rate_per_second,
        accounts.c.rate_burst,
        accounts.c.monthly_segment_quota,
    )
    .join(api_keys, api_keys.c.account_id == accounts.c.id)
    .where(api_keys.c.key_hash == bindparam("digest"), api_keys.c.revoked_at.is_(None))
)


def limits_of(row: Any) -> AccountLimits | None:
    """An account row's limits, or ``None`` when it has none."""
    rate, burst, quota = row.rate_per_second, row.rate_burst, row.monthly_segment_quota
    if rate is None and quota is None:
        return None
    return AccountLimits(rate, burst if rate is not None else None, quota)
