"""Fresh planner statistics for Pigeon's PostgreSQL tables, whatever the server's settings.

PostgreSQL plans a query from its statistics of each table (``ANALYZE``). A
prepared statement (psycopg prepares one after a few runs) keeps its plan until
those statistics change. Pigeon's tables start empty, so the first plans are
made for tiny tables: a sequential scan is the cheapest way there to find a
notification by id. Without a new ``ANALYZE`` those plans stay, and every
callback, every status update then reads the whole ``notifications``,
``send_attempts`` and ``timeline`` tables: measured, thousands of rows read per
SMS after a few thousand notifications, growing with history.

The server's autovacuum would analyze the tables in time, but it may be off
(it is on the servers our tests use) or slow to come round (``autovacuum_naptime``,
a minute by default). So Pigeon analyzes its own tables when enough of them
changed since the last ``ANALYZE``, by autovacuum's own default rule (50 rows
plus 10 % of the table): a few times while a table is young, rarely once it is
large. ``ANALYZE`` samples at most 30,000 rows, skips a table that another
``ANALYZE`` holds (``SKIP_LOCKED``), and blocks no reader or writer.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pigeon.store.schema import metadata

#: autovacuum's defaults: ``autovacuum_analyze_threshold`` and ``…_scale_factor``
BASE_THRESHOLD = 50
SCALE_FACTOR = 0.1

_STALE = text(
    "SELECT relname FROM pg_stat_user_tables"
    " WHERE schemaname = current_schema()"
    " AND n_mod_since_analyze > :base + :scale * greatest(n_live_tup, 0)"
    " ORDER BY relname"
)


def stale_tables(conn: Connection) -> list[str]:
    """Pigeon's tables whose statistics are out of date (by autovacuum's rule)."""
    ours = set(metadata.tables)
    found = conn.execute(_STALE, {"base": BASE_THRESHOLD, "scale": SCALE_FACTOR})
    return [name for (name,) in found if name in ours]


def refresh(conn: Connection) -> list[str]:
    """``ANALYZE`` every stale table of Pigeon's; returns their names.

    Only names from Pigeon's own schema reach the statement, each quoted.
    """
    tables = stale_tables(conn)
    for name in tables:
        conn.execute(text(f'ANALYZE (SKIP_LOCKED) "{name}"'))
    return tables
