"""Alembic environment: Pigeon runs migrations itself (``pigeon db upgrade``).

The connection comes from :mod:`pigeon.store.migrate` through
``config.attributes["connection"]``; there is no ``alembic.ini`` to keep in step.
"""

from __future__ import annotations

from alembic import context

from pigeon.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE on SQLite
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
