"""Whose entries a tenant's search reads: its own, plus the public corpus when its plan allows.

`open_scope` answers, in one statement, what a search needs before its scans: the tenant exists
and is active, and its public-corpus flag. `search_in_scope` answers that and a whole vector
search (the visible entries counted up to the planner's limit, the HNSW scan's settings made,
the chosen scan) in one statement (docs/search.md, "How a search runs").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from hartonomous.billing.plan_versions import in_force_sql
from hartonomous.embed.spaces import EmbeddingSpace
from hartonomous.embed.vector_param import Float4Array
from hartonomous.search.planner import PlannerSettings
from hartonomous.search.query import (
    EntrySql,
    Filters,
    Scope,
    VectorSearch,
    fetch,
    scoped_neighbours,
    scoped_search,
)
from hartonomous.security.tenants import (
    TenantDisabledError,
    UnknownTenantError,
    validate_tenant_id,
)

# The flag of the plan version in force now (docs/billing.md, "Plans"); NULL with no plan.
_PUBLIC_CORPUS_FLAG = f"({in_force_sql(':tenant_id', 'now()', 'can_query_public_corpus')})"


def can_query_public_corpus(connection: Connection, tenant_id: str) -> bool:
    """The flag of the tenant's plan in force: its own active plan, else the global one
    (docs/search.md). With no plan at all, the public corpus stays closed."""
    (flag,) = fetch(connection, f"SELECT {_PUBLIC_CORPUS_FLAG} AS flag", {"tenant_id": tenant_id})
    return bool(flag.flag)


# The tenant's row as the CTE ``tenant``: NULL when unknown, else is_active and the flag.
_TENANT = (
    "tenant AS MATERIALIZED (SELECT is_active, "
    f"coalesce({_PUBLIC_CORPUS_FLAG}, false) AS include_public "
    "FROM tenants WHERE tenant_id = :tenant_id)"
)


@dataclass(frozen=True)
class VectorCount:
    """What a vector search scans: entries of ``space`` under ``filters``, ``k`` rows."""

    space: EmbeddingSpace
    filters: Filters
    k: int
    settings: PlannerSettings


@dataclass(frozen=True)
class OpenedScope:
    scope: Scope
    visible: int | None
    """Visible entries counted up to ``exact_limit + 1``, for a vector search."""


def open_scope(connection: Connection, tenant_id: str) -> OpenedScope:
    """The tenant's search scope, in one round trip.

    Raises ``InvalidTenantError``, ``UnknownTenantError`` or ``TenantDisabledError``
    (security/tenants.py).
    """
    validate_tenant_id(tenant_id)
    rows = fetch(
        connection,
        f"WITH {_TENANT} SELECT is_active, include_public FROM tenant",
        {"tenant_id": tenant_id},
    )
    row: Any = rows[0] if rows else None
    _check(tenant_id, row)
    return OpenedScope(Scope(tenant_id, bool(row.include_public)), None)


def search_in_scope(
    connection: Connection,
    tenant_id: str,
    count: VectorCount,
    vector: npt.NDArray[np.float32],
    *,
    details: bool = False,
) -> tuple[OpenedScope, VectorSearch]:
    """`open_scope` and `search.query.search_vector` (with ``details``: each neighbour's text
    and source) in one statement, one round trip (`search.query.scoped_search`).

    Raises what `open_scope` raises; ``ValueError`` for a vector of another dimension.
    """
    validate_tenant_id(tenant_id)
    space = count.space
    if vector.shape != (space.dimension,):
        raise ValueError(f"{space.name} vectors have {space.dimension} dimensions")
    # The public branch is gated by the flag read in the same statement (a one-time filter).
    sql = EntrySql(
        space,
        Scope(tenant_id, True),
        count.filters,
        public_gate="(SELECT tenant.include_public FROM tenant)",
        opaque=True,
    )
    text, params = scoped_search(sql, _TENANT, count.k, count.settings, details)
    rows = fetch(connection, text, {**params, "q": Float4Array([vector])})
    _check(tenant_id, rows[0] if rows else None)
    found = scoped_neighbours(rows, count.k, count.settings, details)
    opened = OpenedScope(Scope(tenant_id, bool(rows[0].include_public)), int(rows[0].visible))
    return opened, found


def _check(tenant_id: str, row: Any) -> None:
    if row is None:
        raise UnknownTenantError(tenant_id)
    if not row.is_active:
        raise TenantDisabledError(tenant_id)
