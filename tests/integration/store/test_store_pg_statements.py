"""One-statement inserts on PostgreSQL (``pigeon.store.pg_statements``), against the server."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine
from tests.integration.postgres import fresh_schema

from pigeon.store import migrate
from pigeon.store.engine import DatabaseUrl
from pigeon.store.pg_statements import insert_new, insert_rows, pg_type, update_rows
from pigeon.store.schema import metadata, outbox, pending_callbacks, send_attempts


@pytest.fixture
def engine() -> Iterator[tuple[Engine, str]]:
    """A migrated PostgreSQL schema: an engine on it, and its URL."""
    with fresh_schema() as url:
        database = DatabaseUrl.parse(url)
        migrate.upgrade(database)
        engine = create_engine(database.sqlalchemy_url(asynchronous=False))
        try:
            yield engine, url
        finally:
            engine.dispose()


def test_every_column_of_every_table_has_a_postgresql_type() -> None:
    """A new column of a type insert_rows cannot send fails here, not in production."""
    for table in metadata.tables.values():
        for column in table.columns:
            assert pg_type(column.type), (table.name, column.name)


def test_rows_of_two_tables_and_the_notify_arrive_in_one_statement(
    engine: tuple[Engine, str],
) -> None:
    """Every row as given (NULLs, bytes, times kept), and a listener hears the channel."""
    db, url = engine
    now = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC)
    events = [
        {
            "topic": "t",
            "key": f"k{i}",
            "value": bytes([i, 0, 255]),
            "headers": "{}",
            "created_at": now,
        }
        for i in range(3)
    ]
    kept = [{"provider_message_id": "SM1", "params": '{"a": "b"}', "received_at": now}]
    with psycopg.connect(DatabaseUrl.parse(url).psycopg_conninfo(), autocommit=True) as listener:
        listener.execute("LISTEN pigeon_test")
        with db.begin() as conn:
            insert_rows(conn, [(outbox, events), (pending_callbacks, kept)], notify="pigeon_test")
        heard = [n.channel for n in listener.notifies(timeout=5, stop_after=1)]
    assert heard == ["pigeon_test"]
    with db.connect() as conn:
        rows = conn.execute(
            select(outbox.c.key, outbox.c.value, outbox.c.created_at).order_by(outbox.c.id)
        ).all()
        pending = conn.execute(select(pending_callbacks.c.params)).scalars().all()
    assert [(r.key, bytes(r.value), r.created_at) for r in rows] == [
        (f"k{i}", bytes([i, 0, 255]), now) for i in range(3)
    ]
    assert pending == ['{"a": "b"}']


def test_a_failing_statement_writes_nothing(engine: tuple[Engine, str]) -> None:
    """One bad row (a NULL where none may be) fails the statement: no table gets a row."""
    db, _ = engine
    now = datetime.now(UTC)
    good = {"topic": "t", "key": "k", "value": b"v", "headers": "{}", "created_at": now}
    bad = {"provider_message_id": None, "params": "{}", "received_at": now}
    with pytest.raises(psycopg.errors.NotNullViolation), db.begin() as conn:
        insert_rows(conn, [(outbox, [good]), (pending_callbacks, [bad])])
    with db.connect() as conn:
        assert conn.execute(select(outbox.c.id)).all() == []


def test_update_rows_changes_exactly_the_rows_its_keys_name(engine: tuple[Engine, str]) -> None:
    """Rows found by a two-column key get their new values; a row no key names keeps its own."""
    db, _ = engine
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    started = [
        {"notification_id": nid, "attempt": attempt, "provider": "twilio", "started_at": now}
        | {"outcome": "started"}
        for nid, attempt in (("n1", 1), ("n1", 2), ("n2", 1))
    ]
    with db.begin() as conn:
        insert_rows(conn, [(send_attempts, started)])
        update_rows(
            conn,
            send_attempts,
            ("notification_id", "attempt"),
            [
                {"notification_id": "n1", "attempt": 2, "outcome": "sent", "error": None},
                {"notification_id": "n2", "attempt": 1, "outcome": "transient", "error": "503"},
            ],
        )
    with db.connect() as conn:
        found = conn.execute(
            select(
                send_attempts.c.notification_id,
                send_attempts.c.attempt,
                send_attempts.c.outcome,
                send_attempts.c.error,
            ).order_by(send_attempts.c.notification_id, send_attempts.c.attempt)
        ).all()
    assert [tuple(r) for r in found] == [
        ("n1", 1, "started", None),
        ("n1", 2, "sent", None),
        ("n2", 1, "transient", "503"),
    ]


def test_insert_new_waits_for_a_concurrent_holder_of_the_key_and_leaves_its_row_out(
    engine: tuple[Engine, str],
) -> None:
    """The race cancel and a sender run for attempt 1: whoever inserts second, while the
    first has not committed yet, waits for it and then gets nothing (no error)."""
    database, _ = engine
    now = datetime.now(UTC)
    first = {
        "notification_id": "ntf_1",
        "attempt": 1,
        "provider": "twilio",
        "started_at": now,
        "outcome": "started",
    }
    second = {**first, "provider": "", "outcome": "canceled"}
    other = {**first, "notification_id": "ntf_2"}
    with database.connect() as holder:
        holder.begin()
        assert insert_new(holder, send_attempts, [first], ("notification_id", "attempt")) == {
            ("ntf_1", 1)
        }
        with concurrent.futures.ThreadPoolExecutor(1) as pool:

            def contender() -> set[tuple[object, ...]]:
                with database.begin() as conn:
                    return insert_new(
                        conn, send_attempts, [second, other], ("notification_id", "attempt")
                    )

            waiting = pool.submit(contender)
            with pytest.raises(concurrent.futures.TimeoutError):
                waiting.result(timeout=0.5)  # blocked on the uncommitted key, as it should be
            holder.commit()
            assert waiting.result(timeout=30) == {("ntf_2", 1)}
    with database.connect() as conn:
        rows = conn.execute(
            select(send_attempts.c.notification_id, send_attempts.c.outcome).order_by(
                send_attempts.c.notification_id
            )
        ).all()
    assert [tuple(r) for r in rows] == [("ntf_1", "started"), ("ntf_2", "started")]


def test_text_bytes_and_times_that_json_must_escape_arrive_unchanged(
    engine: tuple[Engine, str],
) -> None:
    """Rows travel as one JSON document: quotes, backslashes, control characters,
    non-BMP text, empty and high bytes, a naive time (taken as UTC) and another
    offset all read back as they were given."""
    db, _ = engine
    texts = ['"quoted"', "back\\slash \\x41", "tab\tnew\nline\u0001", "Привет 😀", "", "{}"]
    values = [b"", b"\\x00", bytes(range(256)), b'{"a":1}', b"\x00\xff", b"plain"]
    moments = [
        datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 30, 8, 0, 0, 1),  # naive: UTC
        datetime(2026, 11, 30, 9, 30, tzinfo=timezone(timedelta(hours=1, minutes=30))),
        datetime(1999, 1, 1, tzinfo=UTC),
        datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    ]
    events = [
        {"topic": "t", "key": text, "value": value, "headers": text, "created_at": moment}
        for text, value, moment in zip(texts, values, moments, strict=True)
    ]
    with db.begin() as conn:
        insert_rows(conn, [(outbox, events)])
    with db.connect() as conn:
        rows = conn.execute(
            select(outbox.c.key, outbox.c.value, outbox.c.headers, outbox.c.created_at).order_by(
                outbox.c.id
            )
        ).all()
    expected_times = [m if m.tzinfo is not None else m.replace(tzinfo=UTC) for m in moments]
    assert [(r.key, bytes(r.value), r.headers, r.created_at) for r in rows] == [
        (t, v, t, m) for t, v, m in zip(texts, values, expected_times, strict=True)
    ]
