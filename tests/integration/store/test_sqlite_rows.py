"""Many rows in a few multi-row INSERT statements on SQLite (``pigeon.store.sqlite_rows``).

Real SQLite files in ``tmp_path``; the rows written must be exactly what an
``executemany`` of the same one-row statement writes, in the same order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from pigeon.store import sqlite_rows

TABLE = (
    "CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, "
    "n INTEGER, data BLOB, kind TEXT NOT NULL)"
)
INSERT = "INSERT INTO t (name, n, data, kind) VALUES (?, ?, ?, 'row')"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(tmp_path / "rows.db", isolation_level=None)
    db.execute(TABLE)
    yield db
    db.close()


def _rows(count: int, start: int = 0) -> list[tuple[object, ...]]:
    return [
        (
            f"name-{i}",
            i if i % 3 else None,
            bytes([i % 256]) * (i % 4),
        )
        for i in range(start, start + count)
    ]


def _table(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT seq, name, n, data, kind FROM t ORDER BY seq").fetchall()


@pytest.mark.parametrize("count", [1, 2, 3, 255, 256, 257, 500, 1000])
def test_rows_match_an_executemany_of_the_same_statement(
    tmp_path: Path, conn: sqlite3.Connection, count: int
) -> None:
    """Every row lands once, in order, with its values and its statement's literals."""
    sqlite_rows.insert_many(conn, INSERT, _rows(count))

    other = sqlite3.connect(tmp_path / "expected.db", isolation_level=None)
    other.execute(TABLE)
    other.executemany(INSERT, _rows(count))
    assert _table(conn) == _table(other)
    other.close()


def test_a_low_parameter_limit_splits_the_rows_into_more_statements(
    conn: sqlite3.Connection,
) -> None:
    """With room for 10 parameters per statement, 7 rows of 3 go 2 + 2 + 2 + 1 and all land."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)

    sqlite_rows.insert_many(conn, INSERT, _rows(7))

    assert [row[1] for row in _table(conn)] == [f"name-{i}" for i in range(7)]
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert [s.count("'row'") for s in inserts] == [2, 2, 2, 1]


def test_a_failing_row_fails_the_statement_and_the_transaction_keeps_nothing(
    conn: sqlite3.Connection,
) -> None:
    """A duplicate in the rows raises SQLite's error; rolled back, nothing of them stays."""
    rows = [*_rows(5), _rows(1, start=2)[0]]
    conn.execute("BEGIN")
    with pytest.raises(sqlite3.IntegrityError):
        sqlite_rows.insert_many(conn, INSERT, rows)
    conn.execute("ROLLBACK")
    assert _table(conn) == []


def test_through_sqlalchemy_the_rows_land_in_its_transaction(tmp_path: Path) -> None:
    """A SQLAlchemy connection works too, and its transaction holds the rows."""
    engine = create_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(TABLE)
    with engine.begin() as conn:
        sqlite_rows.insert_many(conn, INSERT, _rows(300))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*), max(seq) FROM t").one() == (300, 300)
    engine.dispose()


def test_nothing_to_insert_runs_nothing(conn: sqlite3.Connection) -> None:
    """No rows: no statement at all (not even a malformed one)."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    sqlite_rows.insert_many(conn, "not even SQL", [])
    assert statements == []


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE t SET n = ? WHERE name = ?",
        "INSERT INTO t (name, n, data, kind) SELECT ?, ?, ?, 'row'",
        "INSERT INTO t (name, n, data, kind) VALUES (?, ?, ?, 'row') ON CONFLICT DO NOTHING",
    ],
)
def test_a_statement_that_is_not_one_row_of_values_is_refused(
    conn: sqlite3.Connection, sql: str
) -> None:
    """Repeating anything but a trailing VALUES row would change what the SQL means."""
    with pytest.raises(ValueError, match="not an INSERT of one row of VALUES"):
        sqlite_rows.insert_many(conn, sql, _rows(2))
