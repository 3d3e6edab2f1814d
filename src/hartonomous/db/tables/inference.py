"""Inference: requests run by the job worker, their steps, the atoms they used and produced,
and the AtomicStream persisted for each (docs/inference.md, docs/provenance.md).

Tables after the original's `InferenceRequests`, `InferenceSteps` and
`provenance.GenerationStreams`, in snake_case and tenant-scoped. Atom and model ids carry no
foreign key: an inference's history outlives atoms that gc collects later (as
`ingestion_job_atoms` does).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from hartonomous.db.tables.atoms import DIGEST, EMPTY_JSON
from hartonomous.db.tables.base import NEW_UUID, TENANT_ID_LENGTH, metadata
from hartonomous.db.tables.billing import MONEY

INFERENCE_TASKS = ("text_embedding", "semantic_search", "classification", "onnx_run")
INFERENCE_STATUSES = ("pending", "in_progress", "completed", "failed")
INFERENCE_ATOM_ROLES = ("input", "output")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


inference_requests = Table(
    "inference_requests",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("inference_id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("principal_id", String(256)),
    Column("task", String(32), nullable=False),
    # The model that ran (`models.atom_id`); NULL for tasks that use the built-in text model.
    Column("model_atom_id", DIGEST),
    # The request as submitted: task parameters and inputs (large inputs by atom reference).
    Column("input", JSONB, nullable=False, server_default=EMPTY_JSON),
    # SHA-256 of the canonical request (task, model, input): with tenant, the cache key.
    Column("input_hash", DIGEST, nullable=False),
    # The caller's attributes: the billing meter's multiplier dimensions (docs/billing.md).
    Column("attributes", JSONB, nullable=False, server_default=EMPTY_JSON),
    Column("correlation_id", String(128)),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("cache_hit", Boolean, nullable=False, server_default=text("false")),
    # For a cache hit: the earlier inference whose result answered it.
    Column("cached_from", Uuid),
    Column("output", JSONB),
    Column("confidence", Double),
    Column("error", Text),
    # What the completed inference is billed for (tokens/1000, seconds, ...), exact.
    Column("usage_units", MONEY),
    # Claims: a worker holds a job while its lease lasts; an expired lease is claimed again.
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("claimed_by", String(320)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("stream_id", Uuid),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("duration_ms", Double),
    # Feedback (the original's UserRating, UserFeedback).
    Column("rating", SmallInteger),
    Column("feedback", Text),
    Column("rated_at", DateTime(timezone=True)),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], ondelete="CASCADE"),
    CheckConstraint(_one_of("task", INFERENCE_TASKS), name="task"),
    CheckConstraint(_one_of("status", INFERENCE_STATUSES), name="status"),
    CheckConstraint("rating BETWEEN 0 AND 5", name="rating"),
    # The worker's claim: oldest open job first.
    Index(
        "ix_inference_requests_open",
        "requested_at",
        postgresql_where=text("status IN ('pending', 'in_progress')"),
    ),
    # Cache lookups: an earlier completed, computed answer to the same request.
    Index(
        "ix_inference_requests_cache",
        "tenant_id",
        "task",
        "input_hash",
        postgresql_where=text("status = 'completed' AND NOT cache_hit"),
    ),
    info={"cdc_captured": True},
)

inference_steps = Table(
    "inference_steps",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("inference_id", Uuid, primary_key=True),
    Column("step_number", Integer, primary_key=True),
    Column("operation", String(64), nullable=False),
    Column("model_atom_id", DIGEST),
    Column("query_text", Text),
    Column("index_used", Text),
    Column("rows_examined", BigInteger),
    Column("rows_returned", BigInteger),
    Column("duration_ms", Double, nullable=False),
    Column("cache_used", Boolean, nullable=False, server_default=text("false")),
    Column("detail", JSONB, nullable=False, server_default=EMPTY_JSON),
    ForeignKeyConstraint(
        ["tenant_id", "inference_id"],
        ["inference_requests.tenant_id", "inference_requests.inference_id"],
        ondelete="CASCADE",
    ),
)

# The atoms an inference read (`input`) and wrote (`output`): the USED_INPUT and PRODUCED edges.
inference_atoms = Table(
    "inference_atoms",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("inference_id", Uuid, primary_key=True),
    Column("role", String(8), primary_key=True),
    Column("ordinal", Integer, primary_key=True),
    Column("atom_id", DIGEST, nullable=False),
    # The input's or output's name (an ONNX tensor name, "text", a neighbour's rank ...).
    Column("name", Text, nullable=False),
    Column("holding_id", Uuid),
    ForeignKeyConstraint(
        ["tenant_id", "inference_id"],
        ["inference_requests.tenant_id", "inference_requests.inference_id"],
        ondelete="CASCADE",
    ),
    CheckConstraint(_one_of("role", INFERENCE_ATOM_ROLES), name="role"),
    Index(None, "atom_id"),
    info={"cdc_captured": True},
)

generation_streams = Table(
    "generation_streams",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("stream_id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("inference_id", Uuid, nullable=False),
    Column("scope", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The AtomicStream bytes (docs/provenance.md).
    Column("stream", LargeBinary, nullable=False),
    Column("payload_size_bytes", Integer, Computed("octet_length(stream)", persisted=True)),
    ForeignKeyConstraint(
        ["tenant_id", "inference_id"],
        ["inference_requests.tenant_id", "inference_requests.inference_id"],
        ondelete="CASCADE",
    ),
    Index(None, "tenant_id", "inference_id"),
    Index(None, "scope"),
    Index(None, "model"),
    info={"cdc_captured": True},
)
