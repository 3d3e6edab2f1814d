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
# runs its statements without a transaction) gets a session-level value instead, remembered in
# the pool entry's info (which a reconnect clears). A pooled connection is only handed out
# holding no session value or the checking-out context's own tenant: another tenant's value is
# cleared first.
_SET_TENANT = "SELECT set_config(%s, %s, %s)"
_SESSION_VALUE = "hartonomous_session_tenant"


def scope_to_bound_tenant(engine: Engine) -> Engine:
    """Make every transaction on ``engine`` start with the bound tenant's setting; return it.

    Covers what SQLAlchemy begins: ``engine.begin()``, the first statement on
    ``engine.connect()``, and an AUTOCOMMIT connection's first statement (a session-level
    value then). Nothing bound sets '', which matches no tenant (fail closed). When the
    connection already holds the bound tenant at session level (the same tenant's previous
    work left it), no statement is sent: a request of a tenant whose connection served it
    last costs no extra round trip. The pool never hands out a connection holding a value
    other than the checking-out context's own tenant (cleared at checkout, one statement), so
    work done on the driver connection before any SQLAlchemy statement, or after a
    driver-level commit, sees the bound tenant's rows at most, and none when nothing is bound.
    """

    def set_tenant(connection: Connection) -> None:
        tenant = bound_tenant() or ""
        info = connection.connection.info
        if info.get(_SESSION_VALUE) == tenant:
            return  # the session already holds it: every statement sees this tenant
        driver = connection.connection.driver_connection
        autocommit = bool(getattr(driver, "autocommit", False))
        connection.exec_driver_sql(_SET_TENANT, (TENANT_SETTING, tenant, not autocommit))
        if autocommit:
            info[_SESSION_VALUE] = tenant

    def clear_other_tenant(
        driver: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        held = record.info.get(_SESSION_VALUE)
        if held is None or held == (bound_tenant() or ""):
            return
        # Checked-out connections are idle: switching to autocommit is allowed and the
        # statement runs outside any transaction that a rollback could undo.
        previous = driver.autocommit
        driver.autocommit = True
        try:
            driver.execute(_SET_TENANT, (TENANT_SETTING, "", False))
        finally:
            driver.autocommit = previous
        record.info[_SESSION_VALUE] = ""

    event.listen(engine, "begin", set_tenant)
    event.listen(engine, "checkout", clear_other_tenant)
    return engine
