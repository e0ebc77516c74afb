"""Dead letters (list, show, replay) and admin API keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("dead_topic", sa.String(length=200), nullable=False),
        sa.Column("dead_partition", sa.Integer(), nullable=False),
        sa.Column("dead_offset", sa.BigInteger(), nullable=False),
        sa.Column("original_topic", sa.String(length=200), nullable=False),
        sa.Column("consumer_group", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=40), nullable=True),
        sa.Column("account_id", sa.String(length=40), nullable=True),
        sa.Column("notification_id", sa.String(length=40), nullable=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "dead_topic", "dead_partition", "dead_offset", name="dead_letters_position"
        ),
    )
    op.create_index("dead_letters_dead_at", "dead_letters", ["dead_at"], unique=False)
    op.create_index("dead_letters_account", "dead_letters", ["account_id", "dead_at"], unique=False)
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("is_admin")
    op.drop_index("dead_letters_account", table_name="dead_letters")
    op.drop_index("dead_letters_dead_at", table_name="dead_letters")
    op.drop_table("dead_letters")
