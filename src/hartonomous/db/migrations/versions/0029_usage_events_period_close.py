"""Usage events from other services and period close (docs/billing.md, "Usage events" and
"Monthly close").

- ``billing_usage_event_receipts``: one row per accepted usage event, keyed by tenant, CloudEvent
  ``source`` and ``id``, with its receipt time: a second event with the same key is answered
  ``duplicate`` while its receipt is kept (at least 35 days, ``[billing]
  usage_event_retention_days``).
- ``billing_closed_periods``: a frozen billing period and the checksum of its totals.
- ``billing_usage_ledger.adjusts_period``: on an adjustment line (a late event for a closed
  period, billed in the first open one) the period the usage belongs to; NULL otherwise.

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

_TENANT = "tenant_id = current_setting('hartonomous.tenant_id', true)"


def upgrade() -> None:
    op.create_table(
        "billing_usage_event_receipts",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(512), primary_key=True),
        sa.Column("event_id", sa.String(256), primary_key=True),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index(
        op.f("ix_billing_usage_event_receipts_received_at"),
        "billing_usage_event_receipts",
        ["received_at"],
    )
    op.execute('ALTER TABLE "billing_usage_event_receipts" ENABLE ROW LEVEL SECURITY')
    op.execute(
        'CREATE POLICY tenant_isolation ON "billing_usage_event_receipts" '
        f"USING ({_TENANT}) WITH CHECK ({_TENANT})"
    )
    op.create_table(
        "billing_closed_periods",
        sa.Column("billing_period", sa.Date(), primary_key=True),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("total_cost", sa.Numeric(24, 6), nullable=False),
        sa.Column(
            "closed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.add_column("billing_usage_ledger", sa.Column("adjusts_period", sa.Date(), nullable=True))
    op.create_index(
        "ix_billing_usage_ledger_adjustments",
        "billing_usage_ledger",
        ["billing_period", "tenant_id"],
        postgresql_where=sa.text("adjusts_period IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_billing_usage_ledger_adjustments", "billing_usage_ledger")
    op.drop_column("billing_usage_ledger", "adjusts_period")
    op.drop_table("billing_closed_periods")
    op.drop_table("billing_usage_event_receipts")
