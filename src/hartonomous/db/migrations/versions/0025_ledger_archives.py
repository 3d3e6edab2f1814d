"""Ledger archives: billing periods moved out of the hot table into verified Parquet files,
and their totals per tenant and operation (docs/billing.md, "Archive").

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_TENANT = "tenant_id = current_setting('hartonomous.tenant_id', true)"


def upgrade() -> None:
    op.create_table(
        "billing_ledger_archives",
        sa.Column(
            "archive_id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")
        ),
        sa.Column("billing_period", sa.Date(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("staging_path", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column(
            "archived_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("restored_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "uq_billing_ledger_archives_open_period",
        "billing_ledger_archives",
        ["billing_period"],
        unique=True,
        postgresql_where=sa.text("restored_at IS NULL"),
    )
    op.create_table(
        "billing_ledger_archive_totals",
        sa.Column("archive_id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("operation", sa.String(128), primary_key=True),
        sa.Column("billing_period", sa.Date(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.Numeric(18, 6), nullable=False),
        sa.Column("total_dcu", sa.Numeric(18, 6), nullable=False),
        sa.Column("total_cost", sa.Numeric(18, 6), nullable=False),
        sa.ForeignKeyConstraint(
            ["archive_id"],
            ["billing_ledger_archives.archive_id"],
            name=op.f("fk_billing_ledger_archive_totals_archive_id_billing_ledger_archives"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_billing_ledger_archive_totals_tenant_id_billing_period"),
        "billing_ledger_archive_totals",
        ["tenant_id", "billing_period"],
    )
    op.execute('ALTER TABLE "billing_ledger_archive_totals" ENABLE ROW LEVEL SECURITY')
    op.execute(
        'CREATE POLICY tenant_isolation ON "billing_ledger_archive_totals" '
        f"USING ({_TENANT}) WITH CHECK ({_TENANT})"
    )


def downgrade() -> None:
    op.drop_table("billing_ledger_archive_totals")
    op.drop_table("billing_ledger_archives")
