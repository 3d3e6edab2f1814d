"""`lineage ID --up|--down` and `GET /v1/lineage/{id}`: the provenance graph around an atom,
model or inference of the caller's tenant (docs/provenance.md, "Lineage").

The walk is one recursive query over the SQL graph the sync worker keeps
(`hartonomous.inference.lineage`): it shows what the worker has synced. Another tenant's
inference, or an atom the tenant holds nothing of, is "not found".
"""

from __future__ import annotations

from hartonomous.errors import UsageError
from hartonomous.inference.lineage import (
    DEFAULT_DEPTH,
    MAX_DEPTH,
    Direction,
    Lineage,
    LineageEdge,
    LineageNode,
    resolve_start,
    walk,
)
from hartonomous.security.tenants import require_active_tenant
from hartonomous.services.database_errors import database_errors
from hartonomous.services.platform import Platform

__all__ = [
    "DEFAULT_DEPTH",
    "MAX_DEPTH",
    "Direction",
    "Lineage",
    "LineageEdge",
    "LineageNode",
    "lineage",
]


def lineage(
    platform: Platform,
    tenant_id: str,
    identifier: str,
    direction: Direction,
    depth: int = DEFAULT_DEPTH,
) -> Lineage:
    """Nodes and edges within ``depth`` steps (1..MAX_DEPTH) up (where it came from) or down
    (what came from it) of an atom hex, model hex or inference UUID.

    Raises ``UsageError`` (a bad id or depth), ``InferenceNotFoundError`` /
    ``AtomNotFoundError`` (not the tenant's), ``UnknownTenantError`` / ``TenantDisabledError``.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise UsageError(f"depth must be 1 to {MAX_DEPTH}, got {depth}")
    with database_errors(), platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        start = resolve_start(connection, tenant_id, identifier)
        return walk(connection, tenant_id, start, direction, depth)
