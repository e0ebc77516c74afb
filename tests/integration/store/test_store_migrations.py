"""The Alembic migrations and ``pigeon.store.schema`` describe the same tables, on both dialects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, select

from pigeon.domain.delivery import DeliveryReport, ReportedStatus
from pigeon.domain.events import utcnow
from pigeon.errors import SchemaNotMigrated
from pigeon.store import migrate
from pigeon.store.engine import DatabaseUrl
from pigeon.store.schema import metadata, pending_callbacks


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


def test_the_head_read_without_alembic_is_alembics_head() -> None:
    """``head_revision`` reads the scripts' revision lines itself (so a current database
    is checked without importing Alembic); it names the head Alembic would."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate._config())
    assert migrate.head_revision() == script.get_current_head()
    assert len(script.get_heads()) == 1


def test_a_current_database_is_checked_and_upgraded_without_loading_alembic(
    database: DatabaseUrl, tmp_path: Path
) -> None:
    """In a fresh interpreter, ``check_current`` and a no-op ``upgrade`` on a current
    database leave Alembic (and Mako, Pygments: ~11 MB) unimported."""
    migrate.upgrade(database)
    probe = (
        "import sys\n"
        "from pigeon.store import migrate\n"
        "from pigeon.store.engine import DatabaseUrl\n"
        f"url = DatabaseUrl.parse({database.url!r})\n"
        "migrate.check_current(url)\n"
        "assert migrate.upgrade(url)[0] == migrate.head_revision()\n"
        "print(sorted(m for m in ('alembic', 'mako', 'pygments') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_callbacks_kept_as_twilio_forms_become_delivery_reports(database: DatabaseUrl) -> None:
    """Migration 0004: a callback an older version kept (its raw form) is applied later
    by code that reads only reports."""
    migrate.upgrade(database, "0003")
    legacy = '{"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}'
    engine = create_engine(database.sqlalchemy_url(asynchronous=False))
    try:
        with engine.begin() as conn:
            conn.execute(
                pending_callbacks.insert(),
                {"provider_message_id": "SM1", "params": legacy, "received_at": utcnow()},
            )
        migrate.upgrade(database)
        with engine.connect() as conn:
            (kept,) = conn.execute(select(pending_callbacks.c.params)).one()
    finally:
        engine.dispose()
    assert DeliveryReport.from_json(kept) == DeliveryReport(
        "SM1", ReportedStatus.UNDELIVERED, 30003
    )
