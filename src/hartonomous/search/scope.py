"""Whose entries a tenant's search reads: its own, plus the public corpus when its plan allows.

`open_scope` answers, in one statement, what a search needs before its scans: the tenant exists
and is active, and its public-corpus flag. `search_in_scope` answers that and a whole vector
search (the visible entries counted up to the planner's limit, the HNSW scan's settings made,
the chosen scan) in one statement (docs/search.md, "How a search runs").
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Engine

from hartonomous.billing.plan_versions import in_force_sql
from hartonomous.embed.spaces import EmbeddingSpace
from hartonomous.embed.vector_param import Float4Array
from hartonomous.search.planner import Method, PlannerSettings
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


LARGE_SCOPE_SECONDS = 10.0
"""How long a scope counted above the planner's exact limit is searched without a new count."""


_PRUNE_AT = 1024
"""Remembered scopes of one engine past which the expired ones are dropped."""


class ScopeSizes:
    """The scopes (tenant, space, filters) of one database last counted above ``exact_limit``,
    remembered for ``LARGE_SCOPE_SECONDS`` in this process.

    Counting up to the limit is a scan of ``exact_limit + 1`` index entries (0.3 ms of a 1.3 ms
    search at the default 2,000: benchmarks/search.py), spent only to learn what the last
    search already said. A scope that shrank under the limit meanwhile is still searched by
    the index (an index scan's recall, where a count would have chosen the exact scan), never
    with fewer rows: a scan that comes back short forgets the scope and the search is made
    again with a count (docs/search.md, "How a search runs").
    """

    def __init__(self) -> None:
        self._counted: weakref.WeakKeyDictionary[Engine, dict[Any, float]] = (
            weakref.WeakKeyDictionary()
        )

    def is_large(self, engine: Engine, key: Any) -> bool:
        counted_at = self._counted.get(engine, {}).get(key)
        return counted_at is not None and time.monotonic() - counted_at < LARGE_SCOPE_SECONDS

    def remember(self, engine: Engine, key: Any, large: bool) -> None:
        scopes = self._counted.setdefault(engine, {})
        if not large:
            scopes.pop(key, None)
            return
        now = time.monotonic()
        if len(scopes) >= _PRUNE_AT:
            # Keys hold filter values (a --since time per query), so they would pile up in a
            # long-running server: drop the expired ones.
            for stale in [k for k, at in scopes.items() if now - at >= LARGE_SCOPE_SECONDS]:
                del scopes[stale]
        scopes[key] = now


_scope_sizes = ScopeSizes()


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
    key = (tenant_id, space.name, count.filters, count.settings)
    known_large = _scope_sizes.is_large(connection.engine, key)
    text, params = scoped_search(
        sql, _TENANT, count.k, count.settings, details, known_large=known_large
    )
    rows = fetch(connection, text, {**params, "q": Float4Array([vector])})
    _check(tenant_id, rows[0] if rows else None)
    found = scoped_neighbours(rows, count.k, count.settings, details)
    visible = None if rows[0].visible is None else int(rows[0].visible)
    if known_large and found.method_used is not Method.HNSW:
        # The index scan came back short: the scope may have shrunk under the limit. Forget
        # it and search again with a count, which chooses the scan and says what it weighed.
        _scope_sizes.remember(connection.engine, key, large=False)
        return search_in_scope(connection, tenant_id, count, vector, details=details)
    if not known_large:
        _scope_sizes.remember(connection.engine, key, found.plan is Method.HNSW)
    opened = OpenedScope(Scope(tenant_id, bool(rows[0].include_public)), visible)
    return opened, found


def _check(tenant_id: str, row: Any) -> None:
    if row is None:
        raise UnknownTenantError(tenant_id)
    if not row.is_active:
        raise TenantDisabledError(tenant_id)
