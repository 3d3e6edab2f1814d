"""The lock that orders a tenant's disabling against the work it stops (docs/security.md).

Disabling a tenant or one of its principals stops its ingestion "at once": no batch may commit
after the disable has. Reading ``is_active`` before storing is not enough under READ COMMITTED
(the disable can commit between the read and the batch's commit), and ``SELECT … FOR SHARE``
on the tenant row needs an UPDATE privilege the API role does not have (db/api_role.py). So
both sides take one transaction-level advisory lock per tenant:

- a writer that must not outlive a disable (a batch of ingestion) takes it **shared** at the
  end of its transaction and then reads the state: it waits for a disable in progress and then
  sees it (the statement after the lock has a fresh snapshot, and a transaction is visible as
  committed before its locks are released);
- a state change (disable or enable of the tenant or of a principal) takes it **exclusive**
  before its UPDATE: it waits for the batches committing, and every later batch sees it.

Two tenants whose ids share a hash only wait for each other now and then; nothing is wrong.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, text

__all__ = ["lock_tenant_state"]

# (class, object) keys: a constant class for tenant state, the tenant id's hash.
_STATE_CLASS: Final = 0x54737461  # "Tsta"

_SHARED = text("SELECT pg_advisory_xact_lock_shared(:cls, hashtext(:tenant))")
_EXCLUSIVE = text("SELECT pg_advisory_xact_lock(:cls, hashtext(:tenant))")


def lock_tenant_state(connection: Connection, tenant_id: str, *, changing: bool) -> None:
    """Hold the tenant's state lock until the current transaction ends: exclusive when
    ``changing`` (a disable or enable is about to be written), else shared (the state is about
    to be read by a writer that must not commit after a disable)."""
    connection.execute(
        _EXCLUSIVE if changing else _SHARED, {"cls": _STATE_CLASS, "tenant": tenant_id}
    )
