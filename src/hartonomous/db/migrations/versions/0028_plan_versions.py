"""Versioned rate plans: a plan change is a new row effective from a given time.

A plan is its tenant (NULL: global) and code; each row is one version of it, in force from
``effective_from`` until the next version's. Versions are never changed once written, so a
ledger row's ``rate_plan_id`` names exactly the rates it was priced with (docs/billing.md,
"Plans"). Two prices the invoice preview needs join the plan: storage per GB-month and a seat
beyond the included ones. Existing plans are in force from their creation.

Revision ID: 0028
Revises: 0027
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

_TABLE = "billing_rate_plans"
_UNIQUE = "ux_billing_rate_plans_tenant_id_plan_code"
_MONEY = sa.Numeric(18, 6)


def upgrade() -> None:
    op.add_column(
        _TABLE,
        sa.Column(
            "effective_from",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
    )
    op.execute(f"UPDATE {_TABLE} SET effective_from = created_at")
    op.add_column(
        _TABLE,
        sa.Column(
            "storage_price_per_gb_month", _MONEY, server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column(
        _TABLE, sa.Column("seat_price", _MONEY, server_default=sa.text("0"), nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_billing_rate_plans_prices_not_negative"),
        _TABLE,
        "storage_price_per_gb_month >= 0 AND seat_price >= 0",
    )
    op.drop_index(_UNIQUE, table_name=_TABLE)
    op.create_index(
        _UNIQUE,
        _TABLE,
        ["tenant_id", "plan_code", "effective_from"],
        unique=True,
        postgresql_where=sa.text("plan_code <> ''"),
        postgresql_nulls_not_distinct=True,
    )


def downgrade() -> None:
    op.drop_index(_UNIQUE, table_name=_TABLE)
    # Keep the newest version of each plan: the old schema holds one row per code.
    op.execute(
        f"DELETE FROM {_TABLE} p WHERE plan_code <> '' AND EXISTS (SELECT 1 FROM {_TABLE} n "
        "WHERE n.tenant_id IS NOT DISTINCT FROM p.tenant_id AND n.plan_code = p.plan_code "
        "AND n.effective_from > p.effective_from)"
    )
    op.create_index(
        _UNIQUE,
        _TABLE,
        ["tenant_id", "plan_code"],
        unique=True,
        postgresql_where=sa.text("plan_code <> ''"),
        postgresql_nulls_not_distinct=True,
    )
    op.drop_constraint(op.f("ck_billing_rate_plans_prices_not_negative"), _TABLE, type_="check")
    op.drop_column(_TABLE, "seat_price")
    op.drop_column(_TABLE, "storage_price_per_gb_month")
    op.drop_column(_TABLE, "effective_from")
