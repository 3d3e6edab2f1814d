"""Whose entries a tenant's search reads: its own, plus the public corpus when its plan allows."""

from __future__ import annotations

from sqlalchemy import Connection, ScalarSelect, select

from hartonomous.db.tables import billing_rate_plans, tenants
from hartonomous.search.query import Scope


def _public_corpus_flag(tenant_id: str) -> ScalarSelect[bool]:
    plans = billing_rate_plans.c
    return (
        select(plans.can_query_public_corpus)
        .where(plans.is_active, (plans.tenant_id == tenant_id) | plans.tenant_id.is_(None))
        .order_by(plans.tenant_id.is_(None), plans.updated_at.desc())
        .limit(1)
        .scalar_subquery()
    )


def can_query_public_corpus(connection: Connection, tenant_id: str) -> bool:
    """The tenant's plan flag: its newest active plan, else the newest active global plan
    (docs/search.md). With no plan at all, the public corpus stays closed."""
    return bool(connection.execute(select(_public_corpus_flag(tenant_id))).scalar_one())


def tenant_scope(connection: Connection, tenant_id: str) -> Scope | None:
    """The tenant's search scope in one round trip; None when there is no such tenant."""
    row = connection.execute(
        select(tenants.c.tenant_id, _public_corpus_flag(tenant_id)).where(
            tenants.c.tenant_id == tenant_id
        )
    ).one_or_none()
    return None if row is None else Scope(tenant_id, bool(row[1]))
