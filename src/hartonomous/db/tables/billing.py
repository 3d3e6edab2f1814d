"""The billing catalogue: rate plans, operation rates and multipliers (docs/billing.md, "Plans")."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Uuid,
    func,
    text,
)

from hartonomous.db.tables.base import (
    NEW_UUID,
    TENANT_ID_LENGTH,
    created_at,
    metadata,
    updated_at,
)

MONEY = Numeric(18, 6)
GIGABYTES = Numeric(18, 2)
MULTIPLIER_DIMENSIONS = (
    "generation",
    "complexity",
    "content",
    "grounding",
    "guarantee",
    "provenance",
)

billing_rate_plans = Table(
    "billing_rate_plans",
    metadata,
    Column("rate_plan_id", Uuid, primary_key=True, server_default=NEW_UUID),
    # NULL tenant_id is the global plan that applies to tenants without one of their own.
    Column(
        "tenant_id",
        String(TENANT_ID_LENGTH),
        ForeignKey("tenants.tenant_id", ondelete="CASCADE"),
    ),
    Column("plan_code", String(64), nullable=False, server_default=text("''")),
    Column("name", String(128), nullable=False),
    Column("description", String(256)),
    Column("default_rate", MONEY, nullable=False, server_default=text("0.01")),
    Column("monthly_fee", MONEY, nullable=False, server_default=text("0")),
    Column("unit_price_per_dcu", MONEY, nullable=False, server_default=text("0.00008")),
    Column("included_public_storage_gb", GIGABYTES, nullable=False, server_default=text("0")),
    Column("included_private_storage_gb", GIGABYTES, nullable=False, server_default=text("0")),
    Column("included_seat_count", Integer, nullable=False, server_default=text("1")),
    Column("allows_private_data", Boolean, nullable=False, server_default=text("false")),
    Column("can_query_public_corpus", Boolean, nullable=False, server_default=text("false")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    created_at(),
    updated_at(),
    # A row is one version of its plan (tenant, code), in force from here until the next
    # version's; versions are never changed once written (migration 0028, docs/billing.md).
    Column("effective_from", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("storage_price_per_gb_month", MONEY, nullable=False, server_default=text("0")),
    Column("seat_price", MONEY, nullable=False, server_default=text("0")),
    CheckConstraint(
        "default_rate >= 0 AND monthly_fee >= 0 AND unit_price_per_dcu >= 0",
        name="money_not_negative",
    ),
    CheckConstraint(
        "storage_price_per_gb_month >= 0 AND seat_price >= 0", name="prices_not_negative"
    ),
    Index(None, "tenant_id", "is_active", postgresql_include=["updated_at"]),
    # NULLS NOT DISTINCT: two global plans may not share a code and effective time either.
    Index(
        "ux_billing_rate_plans_tenant_id_plan_code",
        "tenant_id",
        "plan_code",
        "effective_from",
        unique=True,
        postgresql_where=text("plan_code <> ''"),
        postgresql_nulls_not_distinct=True,
    ),
)

billing_operation_rates = Table(
    "billing_operation_rates",
    metadata,
    Column("operation_rate_id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column(
        "rate_plan_id",
        Uuid,
        ForeignKey("billing_rate_plans.rate_plan_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("operation", String(128), nullable=False),
    Column("unit_of_measure", String(64), nullable=False, server_default=text("''")),
    Column("category", String(64)),
    Column("description", String(256)),
    Column("rate", MONEY, nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    created_at(),
    updated_at(),
    CheckConstraint("rate >= 0", name="rate_not_negative"),
    Index(
        "ux_billing_operation_rates_plan_operation",
        "rate_plan_id",
        "operation",
        unique=True,
        postgresql_where=text("is_active"),
    ),
)

billing_multipliers = Table(
    "billing_multipliers",
    metadata,
    Column("multiplier_id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column(
        "rate_plan_id",
        Uuid,
        ForeignKey("billing_rate_plans.rate_plan_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("dimension", String(32), nullable=False),
    Column("key", String(128), nullable=False),
    Column("multiplier", MONEY, nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    created_at(),
    updated_at(),
    CheckConstraint(
        "dimension IN (" + ", ".join(f"'{name}'" for name in MULTIPLIER_DIMENSIONS) + ")",
        name="dimension",
    ),
    CheckConstraint("multiplier > 0", name="multiplier_positive"),
    Index(
        "ux_billing_multipliers_plan_dimension_key",
        "rate_plan_id",
        "dimension",
        "key",
        unique=True,
        postgresql_where=text("is_active"),
    ),
)
