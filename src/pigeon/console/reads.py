"""What the console reads from the store beyond the API's own reads.

Attempts, accounts, provider health and consumer lag, each one small query on
the store's reader connection (never the writer: a console page never waits
for a commit). Lag is read from the bus's own tables on the embedded stack and
from the outbox with Kafka, where the broker's consumer lag comes from the
metrics snapshot when one is wired in (``ConsoleOptions.lag``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, text

from pigeon.domain.events import utcnow
from pigeon.domain.status import NotificationStatus
from pigeon.store.rows import utc
from pigeon.store.schema import (
    accounts,
    dead_letters,
    notifications,
    outbox,
    send_attempts,
    webhook_deliveries,
    webhook_endpoints,
)
from pigeon.store.sql_store import SqlStore

#: how far back the provider health looks
HEALTH_WINDOW = timedelta(minutes=5)
#: a provider whose last this many finished attempts all failed transiently is "failing"
FAILING_STREAK = 3
_FINAL = tuple(s.value for s in NotificationStatus if s.is_final)


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An account as the console's account picker shows it."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One provider call of a notification, as the attempt journal recorded it."""

    attempt: int
    provider: str
    outcome: str
    started_at: datetime
    finished_at: datetime | None
    provider_message_id: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """A provider's recent attempts: counts by outcome, its last error, a verdict."""

    provider: str
    outcomes: dict[str, int]
    last_error: str | None
    last_error_at: datetime | None
    verdict: str  # "ok", "degraded", "failing" or "idle"


@dataclass(frozen=True, slots=True)
class LagRow:
    """How far one consumer group is behind on one topic partition."""

    group: str
    topic: str
    partition: int
    lag: int


@dataclass(frozen=True)
class Backlog:
    """Everything waiting, at a glance."""

    lag: list[LagRow]
    #: retries the embedded bus holds per group
    retries: dict[str, int] = field(default_factory=dict)
    #: Kafka: events written to the outbox and not yet published, and the oldest one's age
    outbox_rows: int | None = None
    outbox_oldest_seconds: float | None = None
    dead_letters_waiting: int = 0
    #: notifications waiting for a retry or for an open circuit
    retrying: int = 0
    #: why the broker's lag is not shown (Kafka without a metrics snapshot)
    lag_note: str | None = None

    def by_group(self) -> list[tuple[str, int, list[LagRow]]]:
        """``(group, total lag, its partitions)`` per group, in name order."""
        groups: dict[str, list[LagRow]] = {}
        for row in self.lag:
            groups.setdefault(row.group, []).append(row)
        return [(g, sum(r.lag for r in rows), rows) for g, rows in sorted(groups.items())]


async def account_list(store: SqlStore) -> list[AccountRow]:
    """Every account, by name."""
    async with store._read() as conn:
        rows = (await conn.execute(select(accounts.c.id, accounts.c.name))).all()
    return sorted((AccountRow(r.id, r.name) for r in rows), key=lambda a: a.name)


async def owner_of(store: SqlStore, notification_id: str) -> str | None:
    """The account a stored notification belongs to (an admin's look-up), or None."""
    async with store._read() as conn:
        return (
            await conn.execute(
                select(notifications.c.account_id).where(notifications.c.id == notification_id)
            )
        ).scalar_one_or_none()


async def attempts_of(store: SqlStore, notification_id: str) -> list[AttemptRow]:
    """The notification's attempts, first to last (a cancel's placeholder left out)."""
    c = send_attempts.c
    async with store._read() as conn:
        rows = (
            await conn.execute(
                select(send_attempts)
                .where(c.notification_id == notification_id, c.outcome != "canceled")
                .order_by(c.attempt)
            )
        ).all()
    return [
        AttemptRow(
            r.attempt,
            r.provider,
            r.outcome,
            utc(r.started_at),
            utc(r.finished_at) if r.finished_at is not None else None,
            r.provider_message_id,
            r.error,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class WebhookRow:
    """One status webhook of a notification, as the endpoint's delivery log has it."""

    url: str
    event_type: str
    state: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None


async def webhooks_of(store: SqlStore, notification_id: str) -> list[WebhookRow]:
    """The notification's webhook deliveries, in the order they were written."""
    d, e = webhook_deliveries.c, webhook_endpoints.c
    async with store._read() as conn:
        rows = (
            await conn.execute(
                select(webhook_deliveries, e.url)
                .join(webhook_endpoints, e.id == d.endpoint_id)
                .where(d.notification_id == notification_id)
                .order_by(d.seq)
            )
        ).all()
    return [
        WebhookRow(
            r.url,
            r.event_type,
            r.state,
            r.attempts,
            r.last_status_code,
            r.last_error,
            utc(r.delivered_at) if r.delivered_at is not None else None,
            utc(r.next_attempt_at) if r.next_attempt_at is not None else None,
        )
        for r in rows
    ]


async def provider_health(store: SqlStore, now: datetime | None = None) -> list[ProviderHealth]:
    """Each provider's attempts in the last :data:`HEALTH_WINDOW`, and a verdict."""
    since = (now or utcnow()) - HEALTH_WINDOW
    c = send_attempts.c
    async with store._read() as conn:
        counts = (
            await conn.execute(
                select(c.provider, c.outcome, func.count())
                .where(c.started_at >= since, c.provider != "")
                .group_by(c.provider, c.outcome)
            )
        ).all()
        recent = (
            await conn.execute(
                select(c.provider, c.outcome, c.error, c.finished_at)
                .where(c.started_at >= since, c.provider != "", c.finished_at.is_not(None))
                .order_by(c.finished_at.desc())
                .limit(200)
            )
        ).all()
    outcomes: dict[str, dict[str, int]] = {}
    for provider, outcome, count in counts:
        outcomes.setdefault(provider, {})[outcome] = int(count)
    streaks: dict[str, list[str]] = {}
    errors: dict[str, tuple[str, datetime]] = {}
    for row in recent:
        streaks.setdefault(row.provider, []).append(row.outcome)
        if row.error and row.provider not in errors:
            errors[row.provider] = (row.error, utc(row.finished_at))
    health = []
    for provider in sorted(outcomes):
        last = streaks.get(provider, [])
        error = errors.get(provider)
        health.append(
            ProviderHealth(
                provider=provider,
                outcomes=outcomes[provider],
                last_error=error[0] if error else None,
                last_error_at=error[1] if error else None,
                verdict=_verdict(last),
            )
        )
    return health


def _verdict(newest_first: Sequence[str]) -> str:
    if not newest_first:
        return "idle"
    streak = newest_first[:FAILING_STREAK]
    if len(streak) == FAILING_STREAK and all(o in ("transient", "unknown") for o in streak):
        return "failing"
    return "ok" if newest_first[0] == "sent" else "degraded"


#: lag counts stop here: a page polled every few seconds must not scan a huge backlog
LAG_CAP = 100_000
_SQLITE_LAG = text(
    "SELECT o.grp, o.topic, o.partition, (SELECT COUNT(*) FROM (SELECT 1 FROM bus_log l "
    "WHERE l.topic = o.topic AND l.partition = o.partition AND l.id > o.position "
    f"LIMIT {LAG_CAP})) AS lag FROM bus_offsets o ORDER BY o.grp, o.topic, o.partition"
)
_SQLITE_RETRIES = text("SELECT grp, COUNT(*) FROM bus_retries GROUP BY grp")


async def backlog(store: SqlStore, broker_lag: Sequence[LagRow] | None = None) -> Backlog:
    """Consumer lag (``broker_lag`` if measured, else the embedded bus's), dead letters waiting,
    notifications waiting for a retry and, with Kafka, the outbox."""
    async with store._read() as conn:
        waiting = (
            await conn.execute(
                select(func.count())
                .select_from(dead_letters)
                .where(dead_letters.c.replayed_at.is_(None))
            )
        ).scalar_one()
        retrying = (
            await conn.execute(
                select(func.count())
                .select_from(notifications)
                .where(
                    notifications.c.next_attempt_at.is_not(None),
                    notifications.c.status.not_in(_FINAL),
                )
            )
        ).scalar_one()
        if not store.outbox:
            lag = (
                list(broker_lag)
                if broker_lag is not None
                else [LagRow(*r) for r in await conn.execute(_SQLITE_LAG)]
            )
            retries = {r[0]: int(r[1]) for r in await conn.execute(_SQLITE_RETRIES)}
            return Backlog(lag, retries, dead_letters_waiting=waiting, retrying=retrying)
        rows, oldest = (
            await conn.execute(select(func.count(), func.min(outbox.c.created_at)))
        ).one()
    age = (utcnow() - utc(oldest)).total_seconds() if oldest is not None else None
    return Backlog(
        list(broker_lag or []),
        outbox_rows=int(rows),
        outbox_oldest_seconds=age,
        dead_letters_waiting=waiting,
        retrying=retrying,
        lag_note=None
        if broker_lag is not None
        else "the broker's consumer lag is on /metrics (pigeon_consumer_lag)",
    )
