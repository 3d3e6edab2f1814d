"""Embeddings and search: spaces, per-atom vectors, per-tenant search entries, similarity links.

Vectors belong to atoms (global, content-addressed), one per atom and space. What a tenant may
search is `search_entries`: one row per (tenant, space, embedded atom, holding that reaches it),
written when the holding is made and removed with it (cascade), so a search never walks the
atom graph. Each space has its own HNSW index (cosine) on `atom_embeddings`, partial on the
space, over the vector cast to the space's dimension (migration 0006).
"""

from __future__ import annotations

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    cast,
    text,
)

from hartonomous.db.tables.atoms import DIGEST
from hartonomous.db.tables.base import TENANT_ID_LENGTH, created_at, metadata

SPACE_NAME = String(64)

embedding_spaces = Table(
    "embedding_spaces",
    metadata,
    Column("space", SPACE_NAME, primary_key=True),
    Column("dimension", Integer, nullable=False),
    Column("modality", String(32), nullable=False),
    Column("description", Text, nullable=False),
    created_at(),
    # HNSW indexes take at most 2000 dimensions.
    CheckConstraint("dimension BETWEEN 1 AND 2000", name="dimension_range"),
    UniqueConstraint("space", "dimension"),
)

atom_embeddings = Table(
    "atom_embeddings",
    metadata,
    Column("atom_id", DIGEST, ForeignKey("atoms.atom_id", ondelete="CASCADE"), primary_key=True),
    Column("space", SPACE_NAME, primary_key=True),
    Column("dimension", Integer, nullable=False),
    Column("embedding", Vector(), nullable=False),
    created_at(),
    # The space's dimension is enforced by the database, not only by the writers.
    ForeignKeyConstraint(
        ["space", "dimension"], ["embedding_spaces.space", "embedding_spaces.dimension"]
    ),
    CheckConstraint("vector_dims(embedding) = dimension", name="dimension_matches"),
)

search_entries = Table(
    "search_entries",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("space", SPACE_NAME, primary_key=True),
    Column("atom_id", DIGEST, primary_key=True),
    Column("holding_id", Uuid, primary_key=True),
    # Copied from the holding (and its root atom) so that filters need no join.
    Column("visibility", String(16), nullable=False),
    Column("source_type", String(32), nullable=False),
    Column("source_modality", String(32), nullable=False),
    Column("held_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(
        ["tenant_id", "holding_id"],
        ["holdings.tenant_id", "holdings.holding_id"],
        ondelete="CASCADE",
    ),
    ForeignKeyConstraint(
        ["atom_id", "space"],
        ["atom_embeddings.atom_id", "atom_embeddings.space"],
        ondelete="CASCADE",
    ),
    CheckConstraint("visibility IN ('private', 'public')", name="visibility"),
    Index(None, "tenant_id", "holding_id"),
    Index(None, "atom_id", "space"),
    # Filtered searches: the count and the exact scan's atom ids read only matching entries,
    # index-only (migration 0027, docs/search.md).
    Index(
        "ix_search_entries_filters",
        "tenant_id",
        "space",
        "source_modality",
        "source_type",
        "held_at",
        postgresql_include=["atom_id"],
    ),
    # The public corpus, for tenants whose plan may query it.
    Index(
        "ix_search_entries_public",
        "space",
        "atom_id",
        postgresql_where=text("visibility = 'public'"),
    ),
)

deduplication_policies = Table(
    "deduplication_policies",
    metadata,
    Column("policy_name", String(64), primary_key=True),
    # NULL: exact (byte) deduplication only. Otherwise a new text atom whose nearest visible
    # neighbour is at least this similar (cosine) is linked to it in `atom_similarities`.
    Column("semantic_threshold", Float),
    Column("description", Text, nullable=False, server_default=text("''")),
    created_at(),
    CheckConstraint(
        "semantic_threshold IS NULL OR (semantic_threshold > 0 AND semantic_threshold <= 1)",
        name="threshold_range",
    ),
)

# Tenant-scoped on purpose: an `atom_relations` edge is global, would make the neighbour
# visible to every future holder of the new atom, and would count as a reference to it.
atom_similarities = Table(
    "atom_similarities",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("atom_id", DIGEST, primary_key=True),
    Column("relation_type", String(32), nullable=False, server_default=text("'similar_to'")),
    Column("similar_atom_id", DIGEST, nullable=False),
    Column("space", SPACE_NAME, nullable=False),
    Column("similarity", Float, nullable=False),
    Column("policy_name", String(64), nullable=False),
    Column("job_id", Uuid),
    created_at(),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["atom_id"], ["atoms.atom_id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["similar_atom_id"], ["atoms.atom_id"], ondelete="CASCADE"),
    CheckConstraint("relation_type = 'similar_to'", name="relation_type"),
    CheckConstraint("atom_id <> similar_atom_id", name="not_itself"),
    Index(None, "similar_atom_id"),
)

# (space, dimension) of every registered space; migration 0006 seeds `embedding_spaces` with
# these and `embed.spaces` describes them (a unit test keeps the three in step).
SPACE_DIMENSIONS: tuple[tuple[str, int], ...] = (
    ("minilm-l6-v2", 384),
    ("image-features-v1", 168),
    ("audio-logmel-v1", 120),
)


def hnsw_index_name(space: str) -> str:
    return "ix_atom_embeddings_hnsw_" + space.replace("-", "_")


for _space, _dimension in SPACE_DIMENSIONS:
    # An index needs a fixed dimension: the vector is cast to the space's, over its rows only.
    Index(
        hnsw_index_name(_space),
        cast(atom_embeddings.c.embedding, Vector(_dimension)).label("embedding"),
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
        postgresql_where=text(f"space = '{_space}'"),
    )
