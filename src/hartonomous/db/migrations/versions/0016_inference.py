"""Inference requests, their steps and atoms, and generation streams (docs/inference.md).

Each table is tenant-scoped and gets row-level security as revision 0014 describes.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_JSON = sa.text("'{}'::jsonb")
_UUID = sa.text("gen_random_uuid()")
_TABLES = ("inference_requests", "inference_steps", "inference_atoms", "generation_streams")
# Revision 0014's policy, written out: a migration stays what it was when it ran.
_TENANT = "tenant_id = current_setting('hartonomous.tenant_id', true)"


def _tenant() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(64), primary_key=True)


def _parent(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "inference_id"],
        ["inference_requests.tenant_id", "inference_requests.inference_id"],
        name=op.f(f"fk_{table}_tenant_id_inference_requests"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "inference_requests",
        _tenant(),
        sa.Column("inference_id", sa.Uuid(), primary_key=True, server_default=_UUID),
        sa.Column("principal_id", sa.String(256)),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("model_atom_id", sa.LargeBinary(32)),
        sa.Column("input", postgresql.JSONB(), nullable=False, server_default=_JSON),
        sa.Column("input_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("attributes", postgresql.JSONB(), nullable=False, server_default=_JSON),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("cache_hit", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("cached_from", sa.Uuid()),
        sa.Column("output", postgresql.JSONB()),
        sa.Column("confidence", sa.Double()),
        sa.Column("error", sa.Text()),
        sa.Column("usage_units", sa.Numeric(18, 6)),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("claimed_by", sa.String(320)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("stream_id", sa.Uuid()),
        sa.Column(
            "requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("duration_ms", sa.Double()),
        sa.Column("rating", sa.SmallInteger()),
        sa.Column("feedback", sa.Text()),
        sa.Column("rated_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.tenant_id"],
            name=op.f("fk_inference_requests_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "task IN ('text_embedding', 'semantic_search', 'classification', 'onnx_run')",
            name=op.f("ck_inference_requests_task"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'in_progress', 'completed', 'failed')",
            name=op.f("ck_inference_requests_status"),
        ),
        sa.CheckConstraint("rating BETWEEN 0 AND 5", name=op.f("ck_inference_requests_rating")),
    )
    op.create_index(
        "ix_inference_requests_open",
        "inference_requests",
        ["requested_at"],
        postgresql_where=sa.text("status IN ('pending', 'in_progress')"),
    )
    op.create_index(
        "ix_inference_requests_cache",
        "inference_requests",
        ["tenant_id", "task", "input_hash"],
        postgresql_where=sa.text("status = 'completed' AND NOT cache_hit"),
    )
    op.create_table(
        "inference_steps",
        _tenant(),
        sa.Column("inference_id", sa.Uuid(), primary_key=True),
        sa.Column("step_number", sa.Integer(), primary_key=True),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("model_atom_id", sa.LargeBinary(32)),
        sa.Column("query_text", sa.Text()),
        sa.Column("index_used", sa.Text()),
        sa.Column("rows_examined", sa.BigInteger()),
        sa.Column("rows_returned", sa.BigInteger()),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("cache_used", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("detail", postgresql.JSONB(), nullable=False, server_default=_JSON),
        _parent("inference_steps"),
    )
    op.create_table(
        "inference_atoms",
        _tenant(),
        sa.Column("inference_id", sa.Uuid(), primary_key=True),
        sa.Column("role", sa.String(8), primary_key=True),
        sa.Column("ordinal", sa.Integer(), primary_key=True),
        sa.Column("atom_id", sa.LargeBinary(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holding_id", sa.Uuid()),
        _parent("inference_atoms"),
        sa.CheckConstraint("role IN ('input', 'output')", name=op.f("ck_inference_atoms_role")),
    )
    op.create_index(op.f("ix_inference_atoms_atom_id"), "inference_atoms", ["atom_id"])
    op.create_table(
        "generation_streams",
        _tenant(),
        sa.Column("stream_id", sa.Uuid(), primary_key=True, server_default=_UUID),
        sa.Column("inference_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("stream", sa.LargeBinary(), nullable=False),
        sa.Column(
            "payload_size_bytes", sa.Integer(), sa.Computed("octet_length(stream)", persisted=True)
        ),
        _parent("generation_streams"),
    )
    for columns in (["tenant_id", "inference_id"], ["scope"], ["model"]):
        op.create_index(
            op.f("ix_generation_streams_" + "_".join(columns)), "generation_streams", columns
        )
    for table in _TABLES:
        op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        op.execute(
            f'CREATE POLICY tenant_isolation ON "{table}" USING ({_TENANT}) WITH CHECK ({_TENANT})'
        )


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)
