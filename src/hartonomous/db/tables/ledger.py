"""The usage ledger (docs/billing.md): one row per billed event, written with the message's ack.

(tenant_id, event_id) is unique, so a replayed or redelivered event can never be billed twice
(the billed tenant travels in the event: docs/scale-out.md, "Keys").
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSON

from hartonomous.db.tables.base import NEW_UUID, TENANT_ID_LENGTH, metadata
from hartonomous.db.tables.billing import MONEY

billing_usage_ledger = Table(
    "billing_usage_ledger",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("ledger_id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("event_id", String(128), nullable=False),
    Column("principal_id", String(256)),
    Column("operation", String(128), nullable=False),
    Column("message_type", String(256), nullable=False),
    Column("handler", String(64), nullable=False),
    Column("units", MONEY, nullable=False),
    Column("base_rate", MONEY, nullable=False),
    Column("multiplier", MONEY, nullable=False),
    Column("total_dcu", MONEY, nullable=False),
    Column("unit_price", MONEY, nullable=False),
    Column("total_cost", MONEY, nullable=False),
    # NULL when the plan came from settings (no plan row in the database).
    Column("rate_plan_id", Uuid),
    # The meter's JSON text as written (migration 0032): json, not jsonb, because rows are
    # written and exported far more often than anything looks inside them.
    Column("metadata", JSON, nullable=False, server_default=text("'{}'::json")),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The month (its first day, UTC) the row is billed in: exports and closes select by it.
    Column(
        "billing_period",
        Date,
        nullable=False,
        server_default=text("(date_trunc('month', now() AT TIME ZONE 'UTC'))::date"),
    ),
    # On an adjustment line (a late event for a closed period, billed in the first open one):
    # the period the usage belongs to (migration 0029). NULL on every other row.
    Column("adjusts_period", Date),
    # Migration 0034: led by tenant_id (it was event_id alone).
    UniqueConstraint("tenant_id", "event_id"),
    Index(None, "tenant_id", "recorded_at"),
    # The export's order (billing/export.py): a period is read in order, not sorted.
    Index(
        "ix_billing_usage_ledger_export_order",
        "billing_period",
        "tenant_id",
        "recorded_at",
        "event_id",
    ),
    Index(
        "ix_billing_usage_ledger_adjustments",
        "billing_period",
        "tenant_id",
        postgresql_where=text("adjusts_period IS NOT NULL"),
    ),
    # Keeps billing_usage_rollup in the inserting transaction (migration 0026).
    info={"triggers": ("billing_usage_ledger_rollup",)},
)

ROLLUP_MONEY = Numeric(24, 6)  # sums of NUMERIC(18,6) rows: same scale, room for the total

# Totals per tenant, day (UTC), billing period, principal ('' for none) and operation, of every
# row ever billed, archived ones included; reports read it instead of the ledger.
billing_usage_rollup = Table(
    "billing_usage_rollup",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("billing_period", Date, primary_key=True),
    Column("principal_id", String(256), primary_key=True),
    Column("operation", String(128), primary_key=True),
    Column("row_count", BigInteger, nullable=False),
    Column("units", ROLLUP_MONEY, nullable=False),
    Column("total_dcu", ROLLUP_MONEY, nullable=False),
    Column("total_cost", ROLLUP_MONEY, nullable=False),
    Index(None, "billing_period", "tenant_id"),
    # Migration 0032 also keeps statistics `billing_usage_rollup_groups` (ndistinct of tenant,
    # principal, operation, day): the planner's count of a report's groups.
)

# A billing period moved out of `billing_usage_ledger` into a verified Parquet file (written at
# `staging_path`, renamed to `path` once this row committed). Platform data: no tenant.
billing_ledger_archives = Table(
    "billing_ledger_archives",
    metadata,
    Column("archive_id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("billing_period", Date, nullable=False),
    Column("path", Text, nullable=False),
    Column("staging_path", Text, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("archived_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("restored_at", DateTime(timezone=True)),
    # One archive of a period at a time (a restored one may be archived again).
    Index(
        "uq_billing_ledger_archives_open_period",
        "billing_period",
        unique=True,
        postgresql_where=text("restored_at IS NULL"),
    ),
)

# What an archive took out of the ledger, per tenant and operation: reports add it back.
billing_ledger_archive_totals = Table(
    "billing_ledger_archive_totals",
    metadata,
    Column("archive_id", Uuid, nullable=False),
    Column("tenant_id", String(TENANT_ID_LENGTH), nullable=False),
    Column("operation", String(128), nullable=False),
    Column("billing_period", Date, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("units", MONEY, nullable=False),
    Column("total_dcu", MONEY, nullable=False),
    Column("total_cost", MONEY, nullable=False),
    PrimaryKeyConstraint("tenant_id", "archive_id", "operation"),  # tenant first: 0033
    ForeignKeyConstraint(
        ["archive_id"], ["billing_ledger_archives.archive_id"], ondelete="CASCADE"
    ),
    Index(None, "tenant_id", "billing_period"),
)

# One row per accepted usage event (`POST /v1/usage-events`): a second event with the same
# tenant, CloudEvent `source` and `id` is a duplicate while its receipt is kept
# (`[billing] usage_event_retention_days`, at least 35; docs/billing.md, "Usage events").
billing_usage_event_receipts = Table(
    "billing_usage_event_receipts",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("source", String(512), primary_key=True),
    Column("event_id", String(256), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(None, "received_at"),
)

# A closed billing period: frozen, with the SHA-256 of its totals (`ledger close`). Platform
# data: a period closes for every tenant at once.
billing_closed_periods = Table(
    "billing_closed_periods",
    metadata,
    Column("billing_period", Date, primary_key=True),
    Column("checksum", String(64), nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("total_cost", ROLLUP_MONEY, nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
