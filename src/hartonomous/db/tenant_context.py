"""The tenant the current request (or task) works for, as database sessions must see it.

The API binds the authenticated caller's tenant here (``api/auth.py``); an engine scoped with
``hartonomous.db.isolation.scope_to_bound_tenant`` hands it to PostgreSQL at the start of every
transaction, where the row-level security policies read it (docs/security.md, "Isolation").
A context variable, so each request (an asyncio task, and the worker thread it runs a sync
endpoint in, which gets a copy of the task's context) sees only its own tenant. Nothing bound
means no tenant: the policies then show no tenant-scoped row at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["bind_tenant", "bound_tenant", "tenant_bound"]

_tenant: ContextVar[str | None] = ContextVar("hartonomous_tenant", default=None)


def bound_tenant() -> str | None:
    """The tenant id bound in this context, or None."""
    return _tenant.get()


def bind_tenant(tenant_id: str) -> None:
    """Bind ``tenant_id`` for the rest of this context (the request's task and its copies).

    For work that outlives the request or runs in a thread it starts itself (threads do not
    inherit context variables), use ``tenant_bound`` in that thread.
    """
    _tenant.set(tenant_id)


@contextmanager
def tenant_bound(tenant_id: str) -> Iterator[None]:
    """Bind ``tenant_id`` for the block, then restore what was bound before."""
    token = _tenant.set(tenant_id)
    try:
        yield
    finally:
        _tenant.reset(token)
