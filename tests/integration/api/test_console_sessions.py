"""Console sessions on their own: expiry, replacement at sign-in, bounded memory, CSRF."""

from __future__ import annotations

from tests.support import Clock

from pigeon.console import sessions
from pigeon.console.sessions import SessionStore, csrf_matches
from pigeon.domain.notification import Account

ACME = Account("acc_1", "acme")


def test_signing_in_replaces_the_session_so_a_planted_id_is_worthless() -> None:
    """The signed-out session (whose id an attacker could have planted) is gone after
    sign-in; the new one has another id and another CSRF token."""
    store = SessionStore()
    planted = store.new()
    signed = store.sign_in(planted, "pgn_key", ACME)
    assert store.get(planted.id) is None
    assert signed.id != planted.id and signed.csrf != planted.csrf
    assert store.get(signed.id) is signed and signed.signed_in


def test_a_session_ends_when_idle_too_long_and_when_too_old() -> None:
    """Used sessions live on; one idle past the limit, or older than the maximum, is gone."""
    clock = Clock()
    store = SessionStore(clock)
    idle = store.sign_in(None, "k1", ACME)
    busy = store.sign_in(None, "k2", ACME)
    clock.now += sessions.IDLE_SECONDS - 1
    assert store.get(busy.id) is busy
    clock.now += 2
    assert store.get(idle.id) is None
    assert store.get(busy.id) is busy
    while clock.now - busy.created <= sessions.MAX_AGE_SECONDS:
        clock.now += sessions.IDLE_SECONDS / 2
        store.get(busy.id)
    assert store.get(busy.id) is None


def test_a_flood_of_sign_in_pages_cannot_push_out_signed_in_sessions() -> None:
    """Signed-out sessions are bounded apart: the oldest go, the signed-in stay."""
    store = SessionStore()
    signed = store.sign_in(None, "k", ACME)
    first = store.new()
    for _ in range(sessions.MAX_SIGNED_OUT + 10):
        store.new()
    assert store.get(first.id) is None
    assert store.get(signed.id) is signed
    assert len(store) == sessions.MAX_SIGNED_OUT + 1


def test_only_the_sessions_own_token_passes_the_csrf_check() -> None:
    """Missing, empty, another session's or a changed token: refused."""
    store = SessionStore()
    mine, other = store.new(), store.new()
    assert csrf_matches(mine, mine.csrf)
    for presented in (None, "", other.csrf, mine.csrf[:-1], mine.csrf + "x"):
        assert not csrf_matches(mine, presented)
