"""Hot writes on PostgreSQL as one statement each, run on the driver's connection.

Through SQLAlchemy, a transaction of a few small statements costs the API
about a millisecond of CPU: each statement is a round trip with its own
compile-cache look-up, parameter processing and result set-up. An accepted
notification needs three rows (the notification, its first timeline step and
its outbox event) and a ``NOTIFY`` for the relay; :func:`insert_rows` writes
them in one statement, whatever the number of notifications the group commit
gathered: each column travels as one array, and ``unnest`` turns the arrays
back into rows (``WITH a AS (INSERT …), b AS (INSERT …) SELECT pg_notify(…)``).

Column types come from :mod:`pigeon.store.schema`, so the statement follows
the tables.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Insert,
    Integer,
    LargeBinary,
    String,
    Table,
    insert,
)
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

#: one table's rows (every row with the same keys)
Rows = tuple[Table, Sequence[dict[str, Any]]]


def array_type(column_type: TypeEngine[Any]) -> str:
    """The PostgreSQL array type a column's values travel in."""
    for kind, name in (
        (BigInteger, "int8"),  # before Integer: BigInteger is one
        (Integer, "int4"),
        (DateTime, "timestamptz"),
        (Date, "date"),
        (LargeBinary, "bytea"),
        (Boolean, "bool"),
        (String, "text"),  # Text is a String
    ):
        if isinstance(column_type, kind):
            return f"{name}[]"
    raise TypeError(f"no array type for {column_type!r}")


#: a statement's shape: each table with the columns written, and the channel notified
_Shape = tuple[tuple[tuple[Table, tuple[str, ...]], ...], str | None]
_SQL: dict[_Shape, str] = {}


def _statement(shape: _Shape) -> str:
    tables, notify = shape
    parts = []
    for index, (table, columns) in enumerate(tables):
        arrays = ", ".join(
            f"%(t{index}_{name})s::{array_type(table.c[name].type)}" for name in columns
        )
        parts.append(
            f"t{index} AS (INSERT INTO {table.name} ({', '.join(columns)})"
            f" SELECT * FROM unnest({arrays}))"
        )
    final = f"SELECT pg_notify('{notify}', '')" if notify is not None else "SELECT 1"
    return f"WITH {', '.join(parts)} {final}"


def insert_rows(conn: Connection, inserts: Sequence[Rows], notify: str | None = None) -> None:
    """Insert every table's rows and ``NOTIFY notify`` (if given) in one statement.

    Runs in ``conn``'s open transaction (PostgreSQL only). Tables without rows
    are left out. ``notify`` is a channel name of ours, written into the SQL.
    """
    tables: list[tuple[Table, tuple[str, ...]]] = []
    params: dict[str, list[Any]] = {}
    for table, rows in inserts:
        if not rows:
            continue
        columns = tuple(rows[0])
        for name in columns:
            params[f"t{len(tables)}_{name}"] = [row[name] for row in rows]
        tables.append((table, columns))
    if not tables:
        return
    shape = (tuple(tables), notify)
    sql = _SQL.get(shape)
    if sql is None:
        sql = _SQL[shape] = _statement(shape)
    conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]


def insert_many(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``table``: one statement on PostgreSQL, an executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        insert_rows(conn, [(table, rows)])
    else:
        conn.execute(_insert(table), list(rows))


@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)


def execute(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (psycopg's ``%(name)s`` placeholders) in ``conn``'s transaction; its rows."""
    cursor = conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]
    return list(cursor.fetchall()) if cursor.description is not None else []


_UPDATES: dict[tuple[str, tuple[str, ...], tuple[str, ...]], str] = {}


def update_rows(
    conn: Connection, table: Table, keys: tuple[str, ...], rows: Sequence[dict[str, Any]]
) -> None:
    """Update many rows, each found by its ``keys`` columns, in one statement.

    Every row holds the key columns and the columns to set (the same ones in
    each row): ``UPDATE … FROM unnest(…) WHERE`` the keys match.
    """
    if not rows:
        return
    columns = tuple(rows[0])
    shape = (table.name, keys, columns)
    sql = _UPDATES.get(shape)
    if sql is None:
        arrays = ", ".join(f"%({name})s::{array_type(table.c[name].type)}" for name in columns)
        assignments = ", ".join(f"{name} = v.{name}" for name in columns if name not in keys)
        match = " AND ".join(f"t.{name} = v.{name}" for name in keys)
        sql = _UPDATES[shape] = (
            f"UPDATE {table.name} AS t SET {assignments}"
            f" FROM unnest({arrays}) AS v({', '.join(columns)}) WHERE {match}"
        )
    params = {name: [row[name] for row in rows] for name in columns}
    conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]


#: ``ids`` (event ids) that ``consumer`` had not recorded before, recorded now: a
#: concurrent transaction recording the same id makes this one wait, then skip it
#: if that one committed
FIRST_TIME = (
    "INSERT INTO processed_events (consumer, event_id)"
    " SELECT %(consumer)s, e FROM unnest(%(ids)s::text[]) AS e"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


_NEW_SQL: dict[tuple[Table, tuple[str, ...], tuple[str, ...]], str] = {}


def insert_new(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key: tuple[str, ...]
) -> set[tuple[Any, ...]]:
    """Insert the ``rows`` whose unique ``key`` is free; the keys inserted (PostgreSQL).

    One statement (``… ON CONFLICT DO NOTHING RETURNING``): a row whose key a
    concurrent transaction holds waits for it, then is left out if it committed.
    """
    if not rows:
        return set()
    columns = tuple(rows[0])
    shape = (table, columns, key)
    sql = _NEW_SQL.get(shape)
    if sql is None:
        arrays = ", ".join(f"%({name})s::{array_type(table.c[name].type)}" for name in columns)
        sql = _NEW_SQL[shape] = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
            f" ON CONFLICT ({', '.join(key)}) DO NOTHING RETURNING {', '.join(key)}"
        )
    params = {name: [row[name] for row in rows] for name in columns}
    cursor = conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]
    return {tuple(found) for found in cursor.fetchall()}
