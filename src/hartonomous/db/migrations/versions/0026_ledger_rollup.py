"""The ledger's rollup: totals per tenant, day, principal and operation, kept by a trigger in
the transaction of every ledger insert, so reports never scan the ledger and cannot drift
(docs/billing.md, "Reports").

Archived rows stay counted (an archive moves rows, the usage happened); a restore inserts rows
the rollup already counts, so it sets ``hartonomous.ledger_restore`` for its transaction and
the trigger skips them.

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

_TENANT = "tenant_id = current_setting('hartonomous.tenant_id', true)"
_KEY = "tenant_id, day, billing_period, principal_id, operation"
_SUMS = "count(*), sum(units), sum(total_dcu), sum(total_cost)"
_GROUPED = (
    f"SELECT tenant_id, (recorded_at AT TIME ZONE 'UTC')::date, billing_period, "
    f"coalesce(principal_id, ''), operation, {_SUMS} FROM {{source}} "
    f"GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
)
_UPSERT = (
    f"INSERT INTO billing_usage_rollup AS r ({_KEY}, row_count, units, total_dcu, total_cost) "
    "{select} "
    f"ON CONFLICT ({_KEY}) DO UPDATE SET row_count = r.row_count + excluded.row_count, "
    "units = r.units + excluded.units, total_dcu = r.total_dcu + excluded.total_dcu, "
    "total_cost = r.total_cost + excluded.total_cost"
)


def upgrade() -> None:
    money = sa.Numeric(24, 6)
    op.create_table(
        "billing_usage_rollup",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("billing_period", sa.Date(), primary_key=True),
        sa.Column("principal_id", sa.String(256), primary_key=True),
        sa.Column("operation", sa.String(128), primary_key=True),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("units", money, nullable=False),
        sa.Column("total_dcu", money, nullable=False),
        sa.Column("total_cost", money, nullable=False),
    )
    op.create_index(
        op.f("ix_billing_usage_rollup_billing_period_tenant_id"),
        "billing_usage_rollup",
        ["billing_period", "tenant_id"],
    )
    op.execute('ALTER TABLE "billing_usage_rollup" ENABLE ROW LEVEL SECURITY')
    op.execute(
        f'CREATE POLICY tenant_isolation ON "billing_usage_rollup" USING ({_TENANT}) '
        f"WITH CHECK ({_TENANT})"
    )
    op.execute(
        "CREATE FUNCTION billing_usage_rollup_add() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF current_setting('hartonomous.ledger_restore', true) = 'on' THEN\n"
        "    RETURN NULL;\n"
        "  END IF;\n"
        f"  {_UPSERT.format(select=_GROUPED.format(source='new_rows'))};\n"
        "  RETURN NULL;\n"
        "END $$"
    )
    op.execute(
        "CREATE TRIGGER billing_usage_ledger_rollup AFTER INSERT ON billing_usage_ledger "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION billing_usage_rollup_add()"
    )
    # The rows already billed, and those in archives (counted per period: archives keep no
    # day or principal, so they land on the period's first day without a principal).
    op.execute(_UPSERT.format(select=_GROUPED.format(source="billing_usage_ledger")))
    op.execute(
        _UPSERT.format(
            select=(
                "SELECT t.tenant_id, t.billing_period, t.billing_period, '', t.operation, "
                "sum(t.row_count), sum(t.units), sum(t.total_dcu), sum(t.total_cost) "
                "FROM billing_ledger_archive_totals t GROUP BY 1, 2, 3, 4, 5"
            )
        )
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER billing_usage_ledger_rollup ON billing_usage_ledger")
    op.execute("DROP FUNCTION billing_usage_rollup_add()")
    op.drop_table("billing_usage_rollup")
