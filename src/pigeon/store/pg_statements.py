"""Hot writes on PostgreSQL as one statement each, run on the driver's connection.

Through SQLAlchemy, a transaction of a few small statements costs the API
about a millisecond of CPU: each statement is a round trip with its own
compile-cache look-up, parameter processing and result set-up. An accepted
notification needs two rows (the notification and its outbox event) and a
``NOTIFY`` for the relay; :func:`insert_rows` writes them in one statement,
whatever the number of notifications the group commit gathered: each table's
rows travel as one JSON document, and ``json_to_recordset`` turns it back into
typed rows (``WITH a AS (INSERT …), b AS (INSERT …) SELECT
pg_notify(…)``).

Column types come from :mod:`pigeon.store.schema`, so the statement follows
the tables.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import orjson
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


def pg_type(column_type: TypeEngine[Any]) -> str:
    """The PostgreSQL type a column's values are read back as from JSON."""
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
            return name
    raise TypeError(f"no PostgreSQL type for {column_type!r}")


def _recordset(table: Table, columns: tuple[str, ...], param: str) -> str:
    """``json_to_recordset(…) AS v(…)``: the rows of the JSON parameter ``param``."""
    typed = ", ".join(f'"{name}" {pg_type(table.c[name].type)}' for name in columns)
    return f"json_to_recordset(%({param})s::json) AS v({typed})"


def _bytea(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()  # bytea's hex input format
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def json_rows(rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` as one JSON text for :func:`_recordset`.

    Rows travel as one JSON document that the server turns back into typed
    columns, not as one array per column: psycopg builds an array element by
    element in Python (37 % of the API's time in a batch of 500), orjson
    writes the document in C. A time is RFC 3339 with its offset (a naive one
    is taken as UTC), bytes go in bytea's hex form.
    """
    # keys may be str subclasses (SQLAlchemy names columns with quoted_name)
    option = orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(rows, default=_bytea, option=option).decode()


#: a statement's shape: each table with the columns written, and the channel notified
_Shape = tuple[tuple[tuple[Table, tuple[str, ...]], ...], str | None]
_SQL: dict[_Shape, str] = {}


def _insert_part(index: int, table: Table, columns: str, values: str, source: str) -> str:
    """One insert of a ``WITH`` statement: ``t<index> AS (INSERT … SELECT values FROM …)``."""
    return f"t{index} AS (INSERT INTO {table.name} ({columns}) SELECT {values} FROM {source})"


def _with(parts: Sequence[str], notify: str | None) -> str:
    """The ``WITH`` statement of ``parts``, ending in ``NOTIFY notify`` if given."""
    final = f"SELECT pg_notify('{notify}', '')" if notify is not None else "SELECT 1"
    return f"WITH {', '.join(parts)} {final}"


def _statement(shape: _Shape) -> str:
    tables, notify = shape
    parts = []
    for index, (table, columns) in enumerate(tables):
        names = ", ".join(f'"{name}"' for name in columns)
        source = _recordset(table, columns, f"t{index}")
        parts.append(_insert_part(index, table, names, names, source))
    return _with(parts, notify)


def insert_rows(conn: Connection, inserts: Sequence[Rows], notify: str | None = None) -> None:
    """Insert every table's rows and ``NOTIFY notify`` (if given) in one statement.

    Runs in ``conn``'s open transaction (PostgreSQL only). Tables without rows
    are left out. ``notify`` is a channel name of ours, written into the SQL.
    """
    tables: list[tuple[Table, tuple[str, ...]]] = []
    params: dict[str, str] = {}
    for table, rows in inserts:
        if not rows:
            continue
        params[f"t{len(tables)}"] = json_rows(rows)
        tables.append((table, tuple(rows[0])))
    if not tables:
        return
    shape = (tuple(tables), notify)
    sql = _SQL.get(shape)
    if sql is None:
        sql = _SQL[shape] = _statement(shape)
    conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]


#: a table written from another table's rows: each of its columns with the SQL expression
#: (over the other row's columns, or a ``%(name)s`` parameter) that fills it
Derived = tuple[Table, tuple[tuple[str, str], ...]]
_DERIVED_SQL: dict[tuple[Table, tuple[str, ...], tuple[Derived, ...], str | None], str] = {}


def insert_with_derived(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    derived: tuple[Derived, ...],
    *,
    params: dict[str, Any],
    notify: str | None = None,
) -> None:
    """Insert ``rows`` into ``table``, one row per row into each ``derived`` table, and
    ``NOTIFY notify`` (if given), in one statement that carries ``rows`` alone: the
    derived rows are written by the server from them (PostgreSQL only, in ``conn``'s
    open transaction). ``params``: the parameters the derived expressions name.
    """
    if not rows:
        return
    columns = tuple(rows[0])
    shape = (table, columns, derived, notify)
    sql = _DERIVED_SQL.get(shape)
    if sql is None:
        names = ", ".join(f'"{name}"' for name in columns)
        parts = [
            f"v AS MATERIALIZED (SELECT * FROM {_recordset(table, columns, 'rows')})",
            _insert_part(0, table, names, names, "v"),
        ]
        for index, (other, fills) in enumerate(derived, start=1):
            targets = ", ".join(f'"{name}"' for name, _ in fills)
            values = ", ".join(expression for _, expression in fills)
            parts.append(_insert_part(index, other, targets, values, "v"))
        sql = _DERIVED_SQL[shape] = _with(parts, notify)
    driver = conn.connection.driver_connection
    driver.execute(sql, {**params, "rows": json_rows(rows)})  # type: ignore[union-attr]


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
        assignments = ", ".join(f'"{name}" = v."{name}"' for name in columns if name not in keys)
        match = " AND ".join(f't."{name}" = v."{name}"' for name in keys)
        sql = _UPDATES[shape] = (
            f"UPDATE {table.name} AS t SET {assignments}"
            f" FROM {_recordset(table, columns, 'rows')} WHERE {match}"
        )
    conn.connection.driver_connection.execute(sql, {"rows": json_rows(rows)})  # type: ignore[union-attr]


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
        names = ", ".join(f'"{name}"' for name in columns)
        sql = _NEW_SQL[shape] = (
            f"INSERT INTO {table.name} ({names})"
            f" SELECT {names} FROM {_recordset(table, columns, 'rows')}"
            f" ON CONFLICT ({', '.join(key)}) DO NOTHING RETURNING {', '.join(key)}"
        )
    cursor = conn.connection.driver_connection.execute(sql, {"rows": json_rows(rows)})  # type: ignore[union-attr]
    return {tuple(found) for found in cursor.fetchall()}
