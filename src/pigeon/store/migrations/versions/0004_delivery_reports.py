"""Kept status callbacks hold a provider-neutral delivery report, not a Twilio form.

``pending_callbacks.params`` held the raw callback form as JSON; it now holds
:meth:`pigeon.domain.delivery.DeliveryReport.to_json`. Rows written before are
converted by the Twilio adapter (the only provider whose forms were kept).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from alembic import op

from pigeon.providers.twilio_reports import downgrade_stored_report, upgrade_stored_callback

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

_ROWS = sa.text("SELECT id, params FROM pending_callbacks ORDER BY id")
_SET = sa.text("UPDATE pending_callbacks SET params = :params WHERE id = :id")


def upgrade() -> None:
    conn = op.get_bind()
    for row_id, params in conn.execute(_ROWS).all():
        report = upgrade_stored_callback(params)
        if report is not None:
            conn.execute(_SET, {"params": report, "id": row_id})


def downgrade() -> None:
    conn = op.get_bind()
    for row_id, params in conn.execute(_ROWS).all():
        with contextlib.suppress(ValueError):  # a row that is not a report is left alone
            conn.execute(_SET, {"params": downgrade_stored_report(params), "id": row_id})
