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
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from pigeon.domain.events import utcnow
from pigeon.domain.status import NotificationStatus
from pigeon.store import pg_statements
from pigeon.store.rows import utc
from pigeon.store.schema import notifications, send_attempts

#: journal outcomes that end a notification's attempts (until a dead-letter replay);
#: ``canceled``: the caller canceled it before any attempt (see :func:`cancel`)
_DONE = ("sent", "permanent", "exhausted", "canceled")
CANCELED = "canceled"
#: journal outcomes that did not spend the retry budget: replayed away, or never
#: tried because every provider's circuit breaker was open (rows written before
#: skipped tries were forgotten; see finish_attempts)
_NOT_TRIES = ("superseded", "skipped")

# built once: a statement made per call costs more than running it, inside the write lock
_IDS: BindParameter[str] = bindparam("ids", expanding=True)
_STATUSES = select(notifications.c.id, notifications.c.status).where(notifications.c.id.in_(_IDS))
_JOURNAL = select(
    send_attempts.c.notification_id,
    send_attempts.c.attempt,
    send_attempts.c.outcome,
    send_attempts.c.started_at,
).where(send_attempts.c.notification_id.in_(_IDS))
_ANY_ATTEMPT = select(send_attempts.c.attempt).where(
    send_attempts.c.notification_id == bindparam("nid")
)
_FORGET = delete(send_attempts).where(
    and_(
        send_attempts.c.notification_id == bindparam("nid"),
        send_attempts.c.attempt == bindparam("number"),
        send_attempts.c.outcome == "started",
    )
)
_FINISH = update(send_attempts).where(
    and_(
        send_attempts.c.notification_id == bindparam("nid"),
        send_attempts.c.attempt == bindparam("number"),
    )
)


@dataclass(frozen=True)
class AttemptStart:
    """What the journal says before an attempt: its number, or why to skip."""

    notification_id: str
    attempt: int
    skip_reason: str | None = None
    #: an earlier attempt was started and never finished (worker died mid-call)
    unfinished_before: bool = False
    #: when the earliest unfinished attempt started (where to look for it at the provider)
    unfinished_since: datetime | None = None
    #: attempts since the notification was (re)queued, this one included: the
    #: retry budget (a dead-letter replay supersedes earlier attempts)
    try_number: int = 0


@dataclass(frozen=True)
class AttemptResult:
    """How an attempt ended: ``sent``, ``transient``, ``permanent``, ``exhausted``
    (transient, and the last one allowed), ``skipped`` (no provider tried) or ``unknown``.

    ``unknown``: the request may have reached the provider but no answer came
    back (a timeout, a dropped connection); the next attempt looks it up first.
    """

    notification_id: str
    attempt: int
    outcome: str
    provider_message_id: str | None = None
    error: str | None = None


def begin_attempts(conn: Connection, requests: Sequence[tuple[str, str]]) -> list[AttemptStart]:
    """Open an attempt for each ``(notification_id, provider)``, unless already done.

    A notification may appear twice in one batch (a redelivered duplicate): only
    its first occurrence gets an attempt.
    """
    ids = list({nid for nid, _ in requests})
    statuses: dict[str, str] = dict(conn.execute(_STATUSES, {"ids": ids}).all())
    journal: dict[str, list[tuple[int, str]]] = {}
    unfinished: dict[str, datetime] = {}
    for nid, attempt, outcome, started_at in (conn.execute(_JOURNAL, {"ids": ids})).all():
        journal.setdefault(nid, []).append((attempt, outcome))
        if outcome in ("started", "unknown"):  # the provider may have it: ask first
            since = utc(started_at)
            unfinished[nid] = min(since, unfinished.get(nid, since))
    now = utcnow()
    starts, rows, opened = [], [], set()
    for nid, provider in requests:
        status = statuses.get(nid)
        done = [(a, o) for a, o in journal.get(nid, []) if o in _DONE]
        if status is not None and NotificationStatus(status).is_final:
            starts.append(AttemptStart(nid, 0, f"already {status}"))
        elif done:
            starts.append(AttemptStart(nid, 0, f"attempt {done[0][0]} already {done[0][1]}"))
        elif nid in opened:
            starts.append(AttemptStart(nid, 0, "a duplicate of a request in this batch"))
        else:
            previous = journal.get(nid, [])
            number = max((a for a, _ in previous), default=0) + 1
            rows.append(
                {
                    "notification_id": nid,
                    "attempt": number,
                    "provider": provider,
                    "started_at": now,
                    "outcome": "started",
                }
            )
            opened.add(nid)
            starts.append(
                AttemptStart(
                    nid,
                    number,
                    unfinished_before=nid in unfinished,
                    unfinished_since=unfinished.get(nid),
                    try_number=1 + sum(o not in _NOT_TRIES for _, o in previous),
                )
            )
    if conn.dialect.name != "postgresql":
        # SQLite: one writer at a time, so no row can have appeared since the read above
        pg_statements.insert_many(conn, send_attempts, rows)
        return starts
    # PostgreSQL: a cancel (or another sender, after a rebalance) may have taken a
    # number since the read; the unique key decides, and the loser skips it
    taken = pg_statements.insert_new(conn, send_attempts, rows, ("notification_id", "attempt"))
    return [
        AttemptStart(s.notification_id, 0, "canceled or taken by another sender meanwhile")
        if s.attempt and (s.notification_id, s.attempt) not in taken
        else s
        for s in starts
    ]


def cancel(conn: Connection, notification_id: str) -> bool:
    """Take attempt 1 as ``canceled``, so that no sender ever starts one; False when
    an attempt was already opened (the message may be with a provider).

    The journal's unique key (notification, attempt) decides a race with a sender
    opening attempt 1 at the same moment, on either database.
    """
    now = utcnow()
    row = {
        "notification_id": notification_id,
        "attempt": 1,
        "provider": "",
        "started_at": now,
        "finished_at": now,
        "outcome": CANCELED,
    }
    if conn.dialect.name == "postgresql":
        taken = pg_statements.insert_new(conn, send_attempts, [row], ("notification_id", "attempt"))
        return bool(taken)
    if conn.execute(_ANY_ATTEMPT, {"nid": notification_id}).first() is not None:
        return False
    conn.execute(send_attempts.insert(), row)
    return True


def finish_attempts(conn: Connection, results: Sequence[AttemptResult]) -> None:
    """Record each attempt's outcome.

    A ``skipped`` one (every provider's circuit was open: no provider was called)
    was no attempt: its row goes, so the next real attempt takes its number and
    attempts are numbered 1, 2, 3… whatever the waits in between.
    """
    skipped = [r for r in results if r.outcome == "skipped"]
    if skipped:
        conn.execute(
            _FORGET,
            [{"nid": r.notification_id, "number": r.attempt} for r in skipped],
        )
        results = [r for r in results if r.outcome != "skipped"]
    if not results:
        return
    now = utcnow()
    if conn.dialect.name == "postgresql":
        pg_statements.update_rows(
            conn,
            send_attempts,
            ("notification_id", "attempt"),
            [
                {
                    "notification_id": r.notification_id,
                    "attempt": r.attempt,
                    "outcome": r.outcome,
                    "finished_at": now,
                    "provider_message_id": r.provider_message_id,
                    "error": r.error,
                }
                for r in results
            ],
        )
        return
    conn.execute(
        _FINISH,
        [
            {
                "nid": r.notification_id,
                "number": r.attempt,
                "outcome": r.outcome,
                "finished_at": now,
                "provider_message_id": r.provider_message_id,
                "error": r.error,
            }
            for r in results
        ],
    )
