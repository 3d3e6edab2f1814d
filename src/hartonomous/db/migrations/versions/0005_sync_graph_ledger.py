"""Sync worker: SQL graph, sync counters, usage ledger, shared throttle counters.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UNPROJECTED = "projected_at IS NULL OR projected_at < updated_at"


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _properties(name: str) -> sa.Column[object]:
    return sa.Column(
        name,
        postgresql.JSONB(astext_type=sa.Text()),
        server_default=sa.text("'{}'::jsonb"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "graph_nodes",
        sa.Column("node_id", sa.String(length=256), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        _properties("properties"),
        sa.Column("source_event_id", sa.String(length=128), nullable=True),
        _timestamp("updated_at"),
        sa.Column("projected_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_graph_nodes")),
    )
    op.create_index(
        op.f("ix_graph_nodes_tenant_id_label"), "graph_nodes", ["tenant_id", "label"], unique=False
    )
    op.create_index(
        "ix_graph_nodes_unprojected",
        "graph_nodes",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text(_UNPROJECTED),
    )
    op.create_table(
        "graph_edges",
        sa.Column("edge_id", sa.String(length=576), nullable=False),
        sa.Column("relationship", sa.String(length=32), nullable=False),
        sa.Column("from_node_id", sa.String(length=256), nullable=False),
        sa.Column("from_label", sa.String(length=32), nullable=False),
        sa.Column("to_node_id", sa.String(length=256), nullable=False),
        sa.Column("to_label", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        _properties("properties"),
        sa.Column("source_event_id", sa.String(length=128), nullable=True),
        _timestamp("updated_at"),
        sa.Column("projected_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("edge_id", name=op.f("pk_graph_edges")),
    )
    op.create_index(
        op.f("ix_graph_edges_from_node_id"), "graph_edges", ["from_node_id"], unique=False
    )
    op.create_index(op.f("ix_graph_edges_to_node_id"), "graph_edges", ["to_node_id"], unique=False)
    op.create_index(
        "ix_graph_edges_unprojected",
        "graph_edges",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text(_UNPROJECTED),
    )
    op.create_table(
        "sync_counters",
        sa.Column("counter", sa.String(length=256), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("counter", name=op.f("pk_sync_counters")),
    )
    op.create_table(
        "billing_usage_ledger",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column(
            "ledger_id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False
        ),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("principal_id", sa.String(length=256), nullable=True),
        sa.Column("operation", sa.String(length=128), nullable=False),
        sa.Column("message_type", sa.String(length=256), nullable=False),
        sa.Column("handler", sa.String(length=64), nullable=False),
        sa.Column("units", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("base_rate", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("multiplier", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("total_dcu", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("total_cost", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("rate_plan_id", sa.Uuid(), nullable=True),
        _properties("metadata"),
        _timestamp("recorded_at"),
        sa.PrimaryKeyConstraint("tenant_id", "ledger_id", name=op.f("pk_billing_usage_ledger")),
        sa.UniqueConstraint("event_id", name=op.f("uq_billing_usage_ledger_event_id")),
    )
    op.create_index(
        op.f("ix_billing_usage_ledger_tenant_id_recorded_at"),
        "billing_usage_ledger",
        ["tenant_id", "recorded_at"],
        unique=False,
    )
    op.create_table(
        "security_throttle_counters",
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=256), nullable=False),
        sa.Column("operation", sa.String(length=256), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "subject IN ('tenant', 'principal')", name=op.f("ck_security_throttle_counters_subject")
        ),
        sa.CheckConstraint(
            "count >= 0", name=op.f("ck_security_throttle_counters_count_not_negative")
        ),
        sa.PrimaryKeyConstraint(
            "subject", "subject_id", "operation", name=op.f("pk_security_throttle_counters")
        ),
    )


def downgrade() -> None:
    op.drop_table("security_throttle_counters")
    op.drop_index(
        op.f("ix_billing_usage_ledger_tenant_id_recorded_at"), table_name="billing_usage_ledger"
    )
    op.drop_table("billing_usage_ledger")
    op.drop_table("sync_counters")
    op.drop_index("ix_graph_edges_unprojected", table_name="graph_edges")
    op.drop_index(op.f("ix_graph_edges_to_node_id"), table_name="graph_edges")
    op.drop_index(op.f("ix_graph_edges_from_node_id"), table_name="graph_edges")
    op.drop_table("graph_edges")
    op.drop_index("ix_graph_nodes_unprojected", table_name="graph_nodes")
    op.drop_index(op.f("ix_graph_nodes_tenant_id_label"), table_name="graph_nodes")
    op.drop_table("graph_nodes")
