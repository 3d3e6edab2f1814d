"""Billing catalogue: rate plans, operation rates, multipliers (digest 4.1).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_rate_plans",
        sa.Column(
            "rate_plan_id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("plan_code", sa.String(length=64), server_default=sa.text("''"), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column(
            "default_rate",
            sa.Numeric(precision=18, scale=6),
            server_default=sa.text("0.01"),
            nullable=False,
        ),
        sa.Column(
            "monthly_fee",
            sa.Numeric(precision=18, scale=6),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "unit_price_per_dcu",
            sa.Numeric(precision=18, scale=6),
            server_default=sa.text("0.00008"),
            nullable=False,
        ),
        sa.Column(
            "included_public_storage_gb",
            sa.Numeric(precision=18, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "included_private_storage_gb",
            sa.Numeric(precision=18, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("included_seat_count", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "allows_private_data", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "can_query_public_corpus", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "default_rate >= 0 AND monthly_fee >= 0 AND unit_price_per_dcu >= 0",
            name=op.f("ck_billing_rate_plans_money_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.tenant_id"],
            name=op.f("fk_billing_rate_plans_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rate_plan_id", name=op.f("pk_billing_rate_plans")),
    )
    op.create_index(
        op.f("ix_billing_rate_plans_tenant_id_is_active"),
        "billing_rate_plans",
        ["tenant_id", "is_active"],
        unique=False,
        postgresql_include=["updated_at"],
    )
    op.create_index(
        "ux_billing_rate_plans_tenant_id_plan_code",
        "billing_rate_plans",
        ["tenant_id", "plan_code"],
        unique=True,
        postgresql_where=sa.text("plan_code <> ''"),
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "billing_multipliers",
        sa.Column(
            "multiplier_id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False
        ),
        sa.Column("rate_plan_id", sa.Uuid(), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("multiplier", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "dimension IN ('generation', 'complexity', 'content', "
            "'grounding', 'guarantee', 'provenance')",
            name=op.f("ck_billing_multipliers_dimension"),
        ),
        sa.CheckConstraint(
            "multiplier > 0", name=op.f("ck_billing_multipliers_multiplier_positive")
        ),
        sa.ForeignKeyConstraint(
            ["rate_plan_id"],
            ["billing_rate_plans.rate_plan_id"],
            name=op.f("fk_billing_multipliers_rate_plan_id_billing_rate_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("multiplier_id", name=op.f("pk_billing_multipliers")),
    )
    op.create_index(
        "ux_billing_multipliers_plan_dimension_key",
        "billing_multipliers",
        ["rate_plan_id", "dimension", "key"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )
    op.create_table(
        "billing_operation_rates",
        sa.Column(
            "operation_rate_id",
            sa.Uuid(),
            server_default=sa.text("gen_random_uuid()"),
            nullable=False,
        ),
        sa.Column("rate_plan_id", sa.Uuid(), nullable=False),
        sa.Column("operation", sa.String(length=128), nullable=False),
        sa.Column(
            "unit_of_measure", sa.String(length=64), server_default=sa.text("''"), nullable=False
        ),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column("rate", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("rate >= 0", name=op.f("ck_billing_operation_rates_rate_not_negative")),
        sa.ForeignKeyConstraint(
            ["rate_plan_id"],
            ["billing_rate_plans.rate_plan_id"],
            name=op.f("fk_billing_operation_rates_rate_plan_id_billing_rate_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operation_rate_id", name=op.f("pk_billing_operation_rates")),
    )
    op.create_index(
        "ux_billing_operation_rates_plan_operation",
        "billing_operation_rates",
        ["rate_plan_id", "operation"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )
    # ### end Alembic commands ###


def downgrade() -> None:
    op.drop_table("billing_multipliers")
    op.drop_table("billing_operation_rates")
    op.drop_table("billing_rate_plans")
