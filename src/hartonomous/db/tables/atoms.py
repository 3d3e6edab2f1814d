"""The data plane: atoms (global, content-addressed), holdings, models, ingestion jobs.

Atoms are shared by all tenants and addressed by the SHA-256 of the bytes they stand for; a
tenant reaches an atom only through a holding (directly or through the atom's ancestors).
Payload bytes live in `atom_payloads` and reference counts in `atom_reference_counts`, apart
from `atoms`, so change data capture (which publishes `atoms`) never ships chunk bytes, nor an
`atoms` update for every reference taken or released.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR

from hartonomous.db.tables.base import (
    NEW_UUID,
    TENANT_ID_LENGTH,
    created_at,
    metadata,
)

DIGEST = LargeBinary(32)
EMPTY_JSON = text("'{}'::jsonb")
TEXT_SEARCH_CONFIGURATION = "english"
"""PostgreSQL text search configuration of `atoms.text_search` (stemming, English stop words)."""
TEXT_SEARCH_MAX_CHARACTERS = 100_000
TEXT_SEARCH_EXPRESSION = (
    f"to_tsvector('{TEXT_SEARCH_CONFIGURATION}'::regconfig, "
    f"left(coalesce(canonical_text, ''), {TEXT_SEARCH_MAX_CHARACTERS}))"
)


def _reference_count_triggers(table: str) -> tuple[str, str]:
    """Statement-level triggers (migration 0004) that keep atom_reference_counts exact."""
    return (f"{table}_count_refs_insert", f"{table}_count_refs_delete")


FILE_MODALITIES: tuple[str, ...] = (
    "text",
    "document",
    "image",
    "audio",
    "video",
    "model",
    "binary",
)
"""The modalities a file's atom can have: what the extractors report (ingest/extractors), or
``model`` for model files and ``binary`` for opaque ones (ingest/layout.py)."""
SOURCE_TYPES: tuple[str, ...] = ("file", "upload", "sample", "inference")
"""The ``holdings.source_type`` values: ``file`` for `ingest` (IngestRequest's default),
``upload`` for files sent to ``POST /v1/ingest``,
``sample`` for the public sample corpus (ops/sample_content.py),
``inference`` for an inference's stored inputs and outputs (docs/inference.md)."""

atoms = Table(
    "atoms",
    metadata,
    Column("atom_id", DIGEST, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("modality", String(32), nullable=False),
    Column("subtype", String(64), nullable=False, server_default=text("''")),
    Column("size_bytes", BigInteger, nullable=False),
    Column("canonical_text", Text),
    Column("metadata", JSONB, nullable=False, server_default=EMPTY_JSON),
    created_at(),
    # Lexical search (docs/search.md): kept with the row by PostgreSQL itself. Generated
    # columns are not published to change data capture. Text past the first 100,000
    # characters is not indexed (a tsvector holds at most 1 MB).
    Column("text_search", TSVECTOR, Computed(TEXT_SEARCH_EXPRESSION, persisted=True)),
    Index("ix_atoms_text_search", "text_search", postgresql_using="gin"),
    CheckConstraint("octet_length(atom_id) = 32", name="atom_id_is_sha256"),
    CheckConstraint("kind IN ('leaf', 'composite')", name="kind"),
    CheckConstraint("size_bytes >= 0", name="size_not_negative"),
    # A statement-level trigger gives every new atom its atom_reference_counts row.
    info={"cdc_captured": True, "triggers": ("atoms_create_reference_counts",)},
)

# Kept out of `atoms` (and out of change data capture): every reference taken or released
# updates the count, and consumers have no use for those updates.
atom_reference_counts = Table(
    "atom_reference_counts",
    metadata,
    Column("atom_id", DIGEST, ForeignKey("atoms.atom_id", ondelete="CASCADE"), primary_key=True),
    Column("reference_count", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("reference_count >= 0", name="reference_count_not_negative"),
    # Garbage collection looks for unreferenced atoms only.
    Index(
        "ix_atom_reference_counts_unreferenced",
        "atom_id",
        postgresql_where=text("reference_count = 0"),
    ),
)

atom_payloads = Table(
    "atom_payloads",
    metadata,
    Column("atom_id", DIGEST, ForeignKey("atoms.atom_id", ondelete="CASCADE"), primary_key=True),
    Column("content", LargeBinary, nullable=False),
)

# The ComponentStream of a composite atom, one row per run: child, repeat (docs/atoms.md).
atom_components = Table(
    "atom_components",
    metadata,
    Column(
        "parent_atom_id",
        DIGEST,
        ForeignKey("atoms.atom_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("ordinal", Integer, primary_key=True),
    Column("child_atom_id", DIGEST, ForeignKey("atoms.atom_id"), nullable=False),
    Column("repeat", Integer, nullable=False, server_default=text("1")),
    CheckConstraint("repeat >= 1", name="repeat_positive"),
    CheckConstraint("ordinal >= 0", name="ordinal_not_negative"),
    Index(None, "child_atom_id"),
    info={"triggers": _reference_count_triggers("atom_components")},
)

# Derivations that are not composition: text extracted from a PDF page, a video's keyframe.
atom_relations = Table(
    "atom_relations",
    metadata,
    Column(
        "from_atom_id", DIGEST, ForeignKey("atoms.atom_id", ondelete="CASCADE"), primary_key=True
    ),
    Column("relation_type", String(64), primary_key=True),
    Column("ordinal", Integer, primary_key=True),
    Column("to_atom_id", DIGEST, ForeignKey("atoms.atom_id"), nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=EMPTY_JSON),
    Index(None, "to_atom_id"),
    info={"cdc_captured": True, "triggers": _reference_count_triggers("atom_relations")},
)

ingestion_jobs = Table(
    "ingestion_jobs",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("job_id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("principal_id", String(256)),
    Column("status", String(32), nullable=False, server_default=text("'running'")),
    Column("file_count", Integer, nullable=False, server_default=text("0")),
    Column("failed_count", Integer, nullable=False, server_default=text("0")),
    Column("new_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("reused_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("metadata", JSONB, nullable=False, server_default=EMPTY_JSON),
    created_at(),
    Column("finished_at", DateTime(timezone=True)),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], ondelete="CASCADE"),
    CheckConstraint(
        "status IN ('running', 'completed', 'completed_with_errors', 'failed', 'interrupted')",
        name="status",
    ),
    info={"cdc_captured": True},
)

# The files a running job planned, so that a job whose process died can list what it did not
# do. Written when the job starts, deleted when it ends; never captured (working state).
ingestion_job_plans = Table(
    "ingestion_job_plans",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("job_id", Uuid, primary_key=True),
    Column("ordinal", Integer, primary_key=True),
    Column("path", Text, nullable=False),
    ForeignKeyConstraint(
        ["tenant_id", "job_id"],
        ["ingestion_jobs.tenant_id", "ingestion_jobs.job_id"],
        ondelete="CASCADE",
    ),
)

holdings = Table(
    "holdings",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("holding_id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("atom_id", DIGEST, ForeignKey("atoms.atom_id"), nullable=False),
    Column("source_uri", Text, nullable=False),
    Column("source_type", String(32), nullable=False),
    Column("visibility", String(16), nullable=False, server_default=text("'private'")),
    Column("job_id", Uuid),
    Column("metadata", JSONB, nullable=False, server_default=EMPTY_JSON),
    created_at(),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], ondelete="CASCADE"),
    ForeignKeyConstraint(
        ["tenant_id", "job_id"], ["ingestion_jobs.tenant_id", "ingestion_jobs.job_id"]
    ),
    CheckConstraint("visibility IN ('private', 'public')", name="visibility"),
    # The same bytes from the same source are one holding, however often they are ingested.
    UniqueConstraint("tenant_id", "source_uri", "atom_id"),
    Index(None, "atom_id"),
    info={"cdc_captured": True, "triggers": _reference_count_triggers("holdings")},
)

ingestion_job_atoms = Table(
    "ingestion_job_atoms",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("job_id", Uuid, primary_key=True),
    Column("ordinal", Integer, primary_key=True),
    Column("path", Text, nullable=False),
    Column("status", String(16), nullable=False),
    # No foreign key: the job's history outlives atoms that gc collects later.
    Column("atom_id", DIGEST),
    Column("holding_id", Uuid),
    Column("error", Text),
    Column("new_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("reused_bytes", BigInteger, nullable=False, server_default=text("0")),
    ForeignKeyConstraint(
        ["tenant_id", "job_id"],
        ["ingestion_jobs.tenant_id", "ingestion_jobs.job_id"],
        ondelete="CASCADE",
    ),
    CheckConstraint("status IN ('ingested', 'unchanged', 'failed', 'not_done')", name="status"),
    CheckConstraint(
        "(status IN ('failed', 'not_done')) = (atom_id IS NULL)", name="failed_rows_have_no_atom"
    ),
    info={"cdc_captured": True},
)

models = Table(
    "models",
    metadata,
    Column("atom_id", DIGEST, ForeignKey("atoms.atom_id", ondelete="CASCADE"), primary_key=True),
    Column("format", String(32), nullable=False),
    Column("architecture", String(128)),
    Column("parameter_count", BigInteger, nullable=False),
    Column("tensor_count", Integer, nullable=False),
    Column("dtypes", JSONB, nullable=False, server_default=EMPTY_JSON),
    Column("metadata", JSONB, nullable=False, server_default=EMPTY_JSON),
    created_at(),
    CheckConstraint("format IN ('safetensors', 'gguf', 'onnx')", name="format"),
    info={"cdc_captured": True},
)

model_tensors = Table(
    "model_tensors",
    metadata,
    Column(
        "model_atom_id",
        DIGEST,
        ForeignKey("models.atom_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("ordinal", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("dtype", String(32), nullable=False),
    Column("shape", ARRAY(BigInteger), nullable=False),
    Column("parameter_count", BigInteger, nullable=False),
    # NULL when the tensor's bytes are not one contiguous span of the file (some ONNX layouts).
    Column("tensor_atom_id", DIGEST, ForeignKey("atoms.atom_id")),
    Column("byte_offset", BigInteger),
    Column("byte_length", BigInteger, nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=EMPTY_JSON),
    Index(None, "tensor_atom_id"),
    info={"cdc_captured": True},
)
