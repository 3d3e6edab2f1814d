"""Reading one inference of a tenant: the request row, or "not found" (docs/inference.md).

Another tenant's inference is "not found", never "forbidden" (docs/security.md, "Isolation").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, select

from hartonomous.db.tables import inference_requests, inference_steps
from hartonomous.errors import NotFoundError

__all__ = [
    "InferenceNotFoundError",
    "InferenceStep",
    "parse_inference_id",
    "read_steps",
    "require_inference",
]


# The two reads are built once (a waited job makes both; building a statement and its cache
# key on every call is CPU a job pays for).
_REQUEST = select(inference_requests).where(
    inference_requests.c.tenant_id == bindparam("tenant_id"),
    inference_requests.c.inference_id == bindparam("inference_id"),
)
_STEPS = (
    select(inference_steps)
    .where(
        inference_steps.c.tenant_id == bindparam("tenant_id"),
        inference_steps.c.inference_id == bindparam("inference_id"),
    )
    .order_by(inference_steps.c.step_number)
)


class InferenceNotFoundError(NotFoundError, LookupError):
    """No such inference for this tenant."""


def parse_inference_id(text: str) -> uuid.UUID | None:
    """The UUID ``text`` names, or None when it is not a UUID."""
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


def require_inference(
    connection: Connection, tenant_id: str, inference_id: uuid.UUID
) -> RowMapping:
    """The `inference_requests` row of the tenant's inference; raises
    ``InferenceNotFoundError`` when the tenant has none with this id."""
    row = (
        connection.execute(_REQUEST, {"tenant_id": tenant_id, "inference_id": inference_id})
        .mappings()
        .first()
    )
    if row is None:
        raise InferenceNotFoundError(f"inference {inference_id} not found for tenant {tenant_id!r}")
    return row


@dataclass(frozen=True)
class InferenceStep:
    """One `inference_steps` row as read back: what the task did and what it cost (ms)."""

    step_number: int
    operation: str
    duration_ms: float
    index_used: str | None
    rows_examined: int | None
    rows_returned: int | None
    cache_used: bool
    # Any, not JsonValue: the explain route's response model is built from this dataclass,
    # and pydantic cannot build a schema of the recursive JsonValue alias.
    detail: dict[str, Any]


def read_steps(
    connection: Connection, tenant_id: str, inference_id: uuid.UUID
) -> list[InferenceStep]:
    """The inference's steps in order (none for another tenant's)."""
    rows = connection.execute(_STEPS, {"tenant_id": tenant_id, "inference_id": inference_id}).all()
    return [
        InferenceStep(
            step_number=r.step_number,
            operation=r.operation,
            duration_ms=r.duration_ms,
            index_used=r.index_used,
            rows_examined=r.rows_examined,
            rows_returned=r.rows_returned,
            cache_used=r.cache_used,
            detail=dict(r.detail or {}),
        )
        for r in rows
    ]
