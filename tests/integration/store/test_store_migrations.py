"""The Alembic migrations and ``pigeon.store.schema`` describe the same tables, on both dialects."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from pigeon.errors import SchemaNotMigrated
from pigeon.store import migrate
from pigeon.store.engine import DatabaseUrl
from pigeon.store.schema import metadata


def test_the_migrated_schema_matches_the_sqlalchemy_metadata(database: DatabaseUrl) -> None:
    """Alembic's autogenerate finds nothing to change after ``upgrade head``."""
    migrate.upgrade(database)

    engine = create_engine(database.sqlalchemy_url(asynchronous=False))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_an_empty_database_is_behind_until_upgraded_and_then_current(
    database: DatabaseUrl,
) -> None:
    """``check_current`` refuses an empty database, and accepts it after ``upgrade``."""
    with pytest.raises(SchemaNotMigrated, match="pigeon db upgrade"):
        migrate.check_current(database)

    before, after = migrate.upgrade(database)

    assert (before, after) == (None, migrate.head_revision())
    assert migrate.current_revision(database) == migrate.head_revision()
    migrate.check_current(database)
    assert migrate.upgrade(database) == (after, after)  # a second upgrade changes nothing
