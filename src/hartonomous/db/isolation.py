"""Tenant isolation in the database: the setting the row-level security policies read.

Migration 0014 gives every table with a ``tenant_id`` column a policy admitting only rows of
the tenant named by the transaction-local setting ``hartonomous.tenant_id`` (docs/security.md,
"Isolation"). An engine passed to ``scope_to_bound_tenant`` sets it at the start of every
transaction from ``hartonomous.db.tenant_context.bound_tenant()``: the API's engine is
scoped this way, and connects as the API role, to which the policies apply.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from hartonomous.db.tenant_context import bound_tenant

__all__ = ["TENANT_SETTING", "scope_to_bound_tenant"]

TENANT_SETTING = "hartonomous.tenant_id"
"""The custom setting the policies compare ``tenant_id`` with (read with missing_ok)."""

# In a transaction, is_local = true: the value ends with it. A connection in autocommit (search
# runs its statements without a transaction) gets a session-level value instead; the pool
# clears that before the connection is handed out again, so it never reaches another request.
_SET_TENANT = "SELECT set_config(%s, %s, %s)"
_SESSION_VALUE = "hartonomous_session_tenant"


def scope_to_bound_tenant(engine: Engine) -> Engine:
    """Make every transaction on ``engine`` start with the bound tenant's setting; return it.

    Covers what SQLAlchemy begins: ``engine.begin()``, the first statement on
    ``engine.connect()``, and an AUTOCOMMIT connection's first statement (a session-level
    value then, cleared when the pool next hands the connection out). Nothing bound sets '',
    which matches no tenant (fail closed). Work done on the driver connection before any
    SQLAlchemy statement, or after a driver-level commit, runs without the bound tenant and
    so sees no tenant-scoped row.
    """

    def set_tenant(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        autocommit = bool(getattr(driver, "autocommit", False))
        if autocommit:
            connection.connection.info[_SESSION_VALUE] = True
        connection.exec_driver_sql(
            _SET_TENANT, (TENANT_SETTING, bound_tenant() or "", not autocommit)
        )

    def clear_session_value(
        driver: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        if not record.info.pop(_SESSION_VALUE, False):
            return
        # Checked-out connections are idle: switching to autocommit is allowed and the
        # statement runs outside any transaction that a rollback could undo.
        previous = driver.autocommit
        driver.autocommit = True
        try:
            driver.execute(_SET_TENANT, (TENANT_SETTING, "", False))
        finally:
            driver.autocommit = previous

    event.listen(engine, "begin", set_tenant)
    event.listen(engine, "checkout", clear_session_value)
    return engine
