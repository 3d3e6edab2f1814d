"""Embeddings and search: spaces, atom vectors with one HNSW index per space, search entries,
deduplication policies and tenant-scoped similarity links.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen copies: a migration must not change when the application's definitions do.
SPACES = (
    (
        "minilm-l6-v2",
        384,
        "text",
        "all-MiniLM-L6-v2 sentence embeddings (mean pooled, L2-normalised)",
    ),
    (
        "image-features-v1",
        168,
        "image",
        "HSV colour histogram + gradient-orientation texture + DCT perceptual hash",
    ),
    (
        "audio-logmel-v1",
        120,
        "audio",
        "log-mel band statistics: spectral shape, spread and change over time",
    ),
)
POLICIES = (
    ("default", None, "exact (byte) deduplication only"),
    (
        "near-duplicates",
        0.95,
        "also link a new text atom to its nearest visible neighbour at cosine >= 0.95",
    ),
)


def _hnsw_index(space: str) -> str:
    return "ix_atom_embeddings_hnsw_" + space.replace("-", "_")


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    spaces = op.create_table(
        "embedding_spaces",
        sa.Column("space", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "dimension BETWEEN 1 AND 2000", name=op.f("ck_embedding_spaces_dimension_range")
        ),
        sa.PrimaryKeyConstraint("space", name=op.f("pk_embedding_spaces")),
        sa.UniqueConstraint("space", "dimension", name=op.f("uq_embedding_spaces_space_dimension")),
    )
    op.bulk_insert(
        spaces,
        [
            {"space": name, "dimension": dimension, "modality": modality, "description": text}
            for name, dimension, modality, text in SPACES
        ],
    )
    op.create_table(
        "atom_embeddings",
        sa.Column("atom_id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("space", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "vector_dims(embedding) = dimension",
            name=op.f("ck_atom_embeddings_dimension_matches"),
        ),
        sa.ForeignKeyConstraint(
            ["atom_id"],
            ["atoms.atom_id"],
            name=op.f("fk_atom_embeddings_atom_id_atoms"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["space", "dimension"],
            ["embedding_spaces.space", "embedding_spaces.dimension"],
            name=op.f("fk_atom_embeddings_space_embedding_spaces"),
        ),
        sa.PrimaryKeyConstraint("atom_id", "space", name=op.f("pk_atom_embeddings")),
    )
    for name, dimension, _, _ in SPACES:
        op.execute(
            f"CREATE INDEX {_hnsw_index(name)} ON atom_embeddings USING hnsw "
            f"((embedding::vector({dimension})) vector_cosine_ops) WHERE space = '{name}'"
        )
    op.create_table(
        "search_entries",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("space", sa.String(length=64), nullable=False),
        sa.Column("atom_id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("holding_id", sa.Uuid(), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("source_type", sa.String(length=32), nullable=False),
        sa.Column("source_modality", sa.String(length=32), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "visibility IN ('private', 'public')", name=op.f("ck_search_entries_visibility")
        ),
        sa.ForeignKeyConstraint(
            ["atom_id", "space"],
            ["atom_embeddings.atom_id", "atom_embeddings.space"],
            name=op.f("fk_search_entries_atom_id_atom_embeddings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "holding_id"],
            ["holdings.tenant_id", "holdings.holding_id"],
            name=op.f("fk_search_entries_tenant_id_holdings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "space", "atom_id", "holding_id", name=op.f("pk_search_entries")
        ),
    )
    op.create_index(
        op.f("ix_search_entries_tenant_id_holding_id"),
        "search_entries",
        ["tenant_id", "holding_id"],
    )
    op.create_index(op.f("ix_search_entries_atom_id_space"), "search_entries", ["atom_id", "space"])
    op.create_index(
        "ix_search_entries_public",
        "search_entries",
        ["space", "atom_id"],
        postgresql_where=sa.text("visibility = 'public'"),
    )
    policies = op.create_table(
        "deduplication_policies",
        sa.Column("policy_name", sa.String(length=64), nullable=False),
        sa.Column("semantic_threshold", sa.Float(), nullable=True),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "semantic_threshold IS NULL OR (semantic_threshold > 0 AND semantic_threshold <= 1)",
            name=op.f("ck_deduplication_policies_threshold_range"),
        ),
        sa.PrimaryKeyConstraint("policy_name", name=op.f("pk_deduplication_policies")),
    )
    op.bulk_insert(
        policies,
        [
            {"policy_name": name, "semantic_threshold": threshold, "description": text}
            for name, threshold, text in POLICIES
        ],
    )
    op.create_table(
        "atom_similarities",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("atom_id", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "relation_type",
            sa.String(length=32),
            server_default=sa.text("'similar_to'"),
            nullable=False,
        ),
        sa.Column("similar_atom_id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("space", sa.String(length=64), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("policy_name", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        _created_at(),
        sa.CheckConstraint(
            "relation_type = 'similar_to'", name=op.f("ck_atom_similarities_relation_type")
        ),
        sa.CheckConstraint(
            "atom_id <> similar_atom_id", name=op.f("ck_atom_similarities_not_itself")
        ),
        sa.ForeignKeyConstraint(
            ["atom_id"],
            ["atoms.atom_id"],
            name=op.f("fk_atom_similarities_atom_id_atoms"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["similar_atom_id"],
            ["atoms.atom_id"],
            name=op.f("fk_atom_similarities_similar_atom_id_atoms"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.tenant_id"],
            name=op.f("fk_atom_similarities_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "atom_id", name=op.f("pk_atom_similarities")),
    )
    op.create_index(
        op.f("ix_atom_similarities_similar_atom_id"), "atom_similarities", ["similar_atom_id"]
    )


def downgrade() -> None:
    op.drop_table("atom_similarities")
    op.drop_table("deduplication_policies")
    op.drop_table("search_entries")
    op.drop_table("atom_embeddings")
    op.drop_table("embedding_spaces")
