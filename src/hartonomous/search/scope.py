"""Whose entries a tenant's search reads: its own, plus the public corpus when its plan allows.

`open_scope` answers, in one statement, what a search needs before its scan: the tenant exists
and is active, its public-corpus flag and, for a vector search, the visible entries counted up
to the planner's limit, with the HNSW scan's settings made (docs/search.md, "How a search runs").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from hartonomous.embed.spaces import EmbeddingSpace
from hartonomous.search.planner import PlannerSettings
from hartonomous.search.query import EntrySql, Filters, Scope, configure_and_count, statement
from hartonomous.security.tenants import (
    TenantDisabledError,
    UnknownTenantError,
    validate_tenant_id,
)

# The tenant's newest active plan, else the newest active global plan; NULL with no plan.
_PUBLIC_CORPUS_FLAG = (
    "(SELECT p.can_query_public_corpus FROM billing_rate_plans p"
    " WHERE p.is_active AND (p.tenant_id = :tenant_id OR p.tenant_id IS NULL)"
    " ORDER BY p.tenant_id IS NULL, p.updated_at DESC LIMIT 1)"
)


def can_query_public_corpus(connection: Connection, tenant_id: str) -> bool:
    """The tenant's plan flag: its newest active plan, else the newest active global plan
    (docs/search.md). With no plan at all, the public corpus stays closed."""
    flag = connection.execute(
        statement(f"SELECT {_PUBLIC_CORPUS_FLAG}"), {"tenant_id": tenant_id}
    ).scalar_one()
    return bool(flag)


@dataclass(frozen=True)
class VectorCount:
    """What a vector search counts before its scan: entries of ``space`` under ``filters``."""

    space: EmbeddingSpace
    filters: Filters
    k: int
    settings: PlannerSettings


@dataclass(frozen=True)
class OpenedScope:
    scope: Scope
    visible: int | None
    """Visible entries counted up to ``exact_limit + 1``, when a VectorCount was given."""


def open_scope(
    connection: Connection, tenant_id: str, count: VectorCount | None = None
) -> OpenedScope:
    """The tenant's search scope, and with ``count`` the visible entries (HNSW settings made,
    `search.query.configure_and_count`), in one round trip.

    Raises ``InvalidTenantError``, ``UnknownTenantError`` or ``TenantDisabledError``
    (security/tenants.py).
    """
    validate_tenant_id(tenant_id)
    items, params = "", {"tenant_id": tenant_id}
    if count is not None:
        # The public branch is gated by the flag read in this statement (a one-time filter).
        sql = EntrySql(
            count.space, Scope(tenant_id, True), count.filters, public_gate="t.include_public"
        )
        counted, count_params = configure_and_count(sql, count.k, count.settings)
        items, params = f", {counted}", {**params, **count_params}
    row: Any = connection.execute(
        statement(
            "WITH t AS MATERIALIZED (SELECT is_active, "
            f"coalesce({_PUBLIC_CORPUS_FLAG}, false) AS include_public "
            "FROM tenants WHERE tenant_id = :tenant_id) "
            f"SELECT t.is_active, t.include_public{items} FROM t"
        ),
        params,
    ).one_or_none()
    if row is None:
        raise UnknownTenantError(tenant_id)
    if not row.is_active:
        raise TenantDisabledError(tenant_id)
    visible = None if count is None else int(row.visible)
    return OpenedScope(Scope(tenant_id, bool(row.include_public)), visible)
