"""Console sign-in sessions: the API key stays on the server, the browser holds an opaque id.

A session id is 256 random bits in an ``HttpOnly``, ``SameSite=Strict`` cookie
scoped to ``/console``; the key it stands for never leaves this process (not in
a cookie, a URL or a page). Each session has its own CSRF token, which every
form carries and every ``POST`` must present. Signing in replaces the session
(and its id), so an id planted before sign-in is worthless after it.

Sessions live in this process's memory: a restart signs everyone out, and
several API processes behind one address need sticky sessions for the console.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pigeon.domain.notification import Account

COOKIE = "pigeon_console"
COOKIE_PATH = "/console"
#: a session unused this long is gone
IDLE_SECONDS = 8 * 3600
#: and any session ends this long after sign-in
MAX_AGE_SECONDS = 24 * 3600
#: sessions kept at most (the least recently used go first); signed-out ones apart, so
#: a flood of sign-in pages cannot push out the signed-in
MAX_SIGNED_IN = 10_000
MAX_SIGNED_OUT = 1_000


@dataclass
class Session:
    """One browser's session: its CSRF token and, once signed in, the key and account."""

    id: str
    csrf: str
    created: float
    seen: float
    #: the API key, once signed in (kept here only, never sent back to the browser)
    key: str | None = field(default=None, repr=False)
    account: Account | None = None

    @property
    def signed_in(self) -> bool:
        """True once a key was accepted."""
        return self.key is not None


class SessionStore:
    """Sessions by id, in memory, with idle and absolute expiry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._signed_in: OrderedDict[str, Session] = OrderedDict()
        self._signed_out: OrderedDict[str, Session] = OrderedDict()

    def _now(self) -> float:
        return self._clock()

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, idle too long, too old)."""
        if not session_id:
            return None
        now = self._now()
        for table in (self._signed_in, self._signed_out):
            session = table.get(session_id)
            if session is None:
                continue
            if now - session.seen > IDLE_SECONDS or now - session.created > MAX_AGE_SECONDS:
                del table[session_id]
                return None
            session.seen = now
            table.move_to_end(session_id)
            return session
        return None

    def new(self) -> Session:
        """A fresh signed-out session (for the sign-in form's CSRF token)."""
        now = self._now()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self._keep(self._signed_out, session, MAX_SIGNED_OUT)
        return session

    def sign_in(self, previous: Session | None, key: str, account: Account) -> Session:
        """A new signed-in session replacing ``previous`` (a new id and CSRF token)."""
        if previous is not None:
            self.drop(previous.id)
        now = self._now()
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now, key, account
        )
        self._keep(self._signed_in, session, MAX_SIGNED_IN)
        return session

    def drop(self, session_id: str) -> None:
        """Forget a session (sign-out, a revoked key)."""
        self._signed_in.pop(session_id, None)
        self._signed_out.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._signed_in) + len(self._signed_out)

    @staticmethod
    def _keep(table: OrderedDict[str, Session], session: Session, limit: int) -> None:
        table[session.id] = session
        while len(table) > limit:
            table.popitem(last=False)


def csrf_matches(session: Session, presented: str | None) -> bool:
    """Whether ``presented`` is this session's CSRF token (compared in constant time)."""
    return bool(presented) and secrets.compare_digest(
        session.csrf.encode(), (presented or "").encode()
    )
