"""Reading one inference of a tenant: the request row, or "not found" (docs/inference.md).

Another tenant's inference is "not found", never "forbidden" (docs/security.md, "Isolation").
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, RowMapping, select

from hartonomous.db.tables import inference_requests
from hartonomous.errors import NotFoundError

__all__ = ["InferenceNotFoundError", "parse_inference_id", "require_inference"]


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
        connection.execute(
            select(inference_requests).where(
                inference_requests.c.tenant_id == tenant_id,
                inference_requests.c.inference_id == inference_id,
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise InferenceNotFoundError(f"inference {inference_id} not found for tenant {tenant_id!r}")
    return row
