"""The per-message-id locks that order a callback and the sender's journal (PostgreSQL).

A callback and the transaction recording its message id lock the id first
(see ``sql_store._lock_message_ids``). All of a batch's ids are locked in one
statement; these tests check every one of them is really held, until the end
of the transaction, and only them.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from tests.integration.postgres import POSTGRES_URL, fresh_schema

from pigeon.store.sql_store import _MESSAGE_LOCK_CLASS, _lock_message_ids

_MY_ADVISORY_LOCKS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
)


@pytest.fixture
def engine() -> Iterator[Engine]:
    with fresh_schema() as url:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        yield engine
        engine.dispose()


def _free(message_id: str) -> bool:
    """Whether another session can take ``message_id``'s lock right now."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as other:
        row = other.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_MESSAGE_LOCK_CLASS, message_id)
        ).fetchone()
        assert row is not None
        if row[0]:
            other.execute(
                "SELECT pg_advisory_unlock(%s, hashtext(%s))", (_MESSAGE_LOCK_CLASS, message_id)
            )
        return bool(row[0])


def test_every_id_of_a_batch_is_locked_until_the_transaction_ends(engine: Engine) -> None:
    ids = [f"SM{n:032x}" for n in (7, 3, 11, 3)]  # unsorted, one twice
    with engine.connect() as conn:
        with conn.begin():
            _lock_message_ids(conn, ids)
            assert [_free(i) for i in ids] == [False] * len(ids)
            assert _free("SM-not-in-the-batch")
            held = conn.execute(_MY_ADVISORY_LOCKS).scalar_one()
            assert held == 3  # one per distinct id
        assert all(_free(i) for i in ids)


def test_no_ids_lock_nothing(engine: Engine) -> None:
    with engine.connect() as conn, conn.begin():
        _lock_message_ids(conn, [])
        held = conn.execute(_MY_ADVISORY_LOCKS).scalar_one()
        assert held == 0
