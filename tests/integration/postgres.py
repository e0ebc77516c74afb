"""Throwaway PostgreSQL schemas for tests, on the shared server at 127.0.0.1:5432.

Each schema is selected through the URL (``options=-csearch_path=<schema>``), so
Pigeon's tables and Alembic's version table land in it, and is dropped with
``CASCADE`` afterwards. Use it from a ``conftest.py``::

    from tests.integration.postgres import fresh_schema

    with fresh_schema() as url:  # postgresql://...?options=-csearch_path%3Dpigeon_t_...
        ...

Tests are skipped, not failed, when no server answers.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

__all__ = ["POSTGRES_URL", "fresh_schema", "postgres_or_skip", "schema_url"]

#: the server and database the tests use (trust auth); override for another machine
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA_PREFIX = "pigeon_t_"


def schema_url(schema: str, base: str = POSTGRES_URL) -> str:
    """``base`` with ``schema`` as the search path (and application name) of every connection."""
    separator = "&" if "?" in base else "?"
    options = quote(f"-csearch_path={schema}", safe="-")
    return f"{base}{separator}options={options}&application_name={schema}"


def postgres_or_skip() -> None:
    """Skip the calling test unless the server answers."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {exc}")


@contextlib.contextmanager
def fresh_schema(prefix: str = SCHEMA_PREFIX) -> Iterator[str]:
    """A new empty schema; yields its URL and drops it (and everything in it) afterwards."""
    import psycopg

    postgres_or_skip()
    schema = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(schema)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            # sessions a killed process left behind would hold locks on its tables
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                "AND application_name = %s",
                (schema,),
            )
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
