"""The ledger's billing period: the month (UTC) each row is billed in (docs/billing.md).

Exports, closes and reports select rows by period. Until usage events carry their own time
(and late ones are billed into the first open period) a row's period is the month it was
recorded in; existing rows get that month.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

CURRENT_MONTH = sa.text("(date_trunc('month', now() AT TIME ZONE 'UTC'))::date")


def upgrade() -> None:
    op.add_column(
        "billing_usage_ledger",
        sa.Column("billing_period", sa.Date(), nullable=True, server_default=CURRENT_MONTH),
    )
    op.execute(
        "UPDATE billing_usage_ledger "
        "SET billing_period = (date_trunc('month', recorded_at AT TIME ZONE 'UTC'))::date"
    )
    op.alter_column("billing_usage_ledger", "billing_period", nullable=False)
    op.create_index(
        op.f("ix_billing_usage_ledger_billing_period_tenant_id"),
        "billing_usage_ledger",
        ["billing_period", "tenant_id"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_billing_usage_ledger_billing_period_tenant_id"), "billing_usage_ledger")
    op.drop_column("billing_usage_ledger", "billing_period")
