"""The SMS sender's attempt journal: written before and after each provider call.

An attempt row is committed *before* the provider is called and its outcome
*after*. A redelivered request therefore finds (a) an attempt marked ``sent``
and is not sent again, or (b) an attempt still ``started``: the worker died
during the call and the provider may or may not have the message - the one
window left, which the sender reports (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.events import utcnow
from pigeon.domain.status import NotificationStatus
from pigeon.store.schema import notifications, send_attempts


@dataclass(frozen=True)
class AttemptStart:
    """What the journal says before an attempt: its number, or why to skip."""

    notification_id: str
    attempt: int
    skip_reason: str | None = None
    #: an earlier attempt was started and never finished (worker died mid-call)
    unfinished_before: bool = False


@dataclass(frozen=True)
class AttemptResult:
    """How an attempt ended: ``sent``, ``transient`` or ``permanent``."""

    notification_id: str
    attempt: int
    outcome: str
    provider_message_id: str | None = None
    error: str | None = None


async def begin_attempts(
    conn: AsyncConnection, requests: Sequence[tuple[str, str]]
) -> list[AttemptStart]:
    """Open an attempt for each ``(notification_id, provider)``, unless already done."""
    starts = []
    now = utcnow()
    for notification_id, provider in requests:
        status = (
            await conn.execute(
                select(notifications.c.status).where(notifications.c.id == notification_id)
            )
        ).scalar()
        if status is not None and NotificationStatus(status).is_final:
            starts.append(AttemptStart(notification_id, 0, f"already {status}"))
            continue
        rows = (
            await conn.execute(
                select(send_attempts.c.attempt, send_attempts.c.outcome).where(
                    send_attempts.c.notification_id == notification_id
                )
            )
        ).all()
        done = [r for r in rows if r.outcome in ("sent", "permanent")]
        if done:
            starts.append(
                AttemptStart(
                    notification_id, 0, f"attempt {done[0].attempt} already {done[0].outcome}"
                )
            )
            continue
        number = max((r.attempt for r in rows), default=0) + 1
        await conn.execute(
            insert(send_attempts).values(
                notification_id=notification_id,
                attempt=number,
                provider=provider,
                started_at=now,
                outcome="started",
            )
        )
        starts.append(
            AttemptStart(
                notification_id,
                number,
                unfinished_before=any(r.outcome == "started" for r in rows),
            )
        )
    return starts


async def finish_attempts(conn: AsyncConnection, results: Sequence[AttemptResult]) -> None:
    """Record each attempt's outcome."""
    now = utcnow()
    for result in results:
        await conn.execute(
            update(send_attempts)
            .where(
                send_attempts.c.notification_id == result.notification_id,
                send_attempts.c.attempt == result.attempt,
            )
            .values(
                outcome=result.outcome,
                finished_at=now,
                provider_message_id=result.provider_message_id,
                error=result.error,
            )
        )
