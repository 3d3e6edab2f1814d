"""Tenant lifecycle: create, list, show, disable and enable, and the check every command makes.

A tenant is ``active`` or ``disabled`` (the ``tenants.is_active`` column). A disabled tenant
keeps everything it holds, but every tenant-scoped entry point (ingest, search, reading atoms
and holdings) refuses it through :func:`require_active_tenant`, naming the command that
re-enables it. Events committed before the tenant was disabled (before ``disabled_at``) are still
projected and billed by the sync worker: they record work that was done while it was active
(docs/security.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Row, Select, func, select, update

from hartonomous.db.tables import holdings, principals, tenants
from hartonomous.db.tables.base import TENANT_ID_LENGTH, TENANT_ID_PATTERN
from hartonomous.errors import (
    ConflictError,
    HartonomousError,
    NotFoundError,
    UsageError,
    echoed,
)
from hartonomous.security.principals import (
    display_name_problem,
    ensure_tenant,
    require_active_principal,
)
from hartonomous.security.state_lock import lock_tenant_state
from hartonomous.storable import storable_text

TenantState = Literal["active", "disabled"]

_VALID_ID = re.compile(TENANT_ID_PATTERN)


class TenantError(HartonomousError, ValueError):
    """A tenant command or check that cannot proceed; the message names the tenant and why."""


def creatable_tenant_id(tenant_id: str) -> bool:
    """Whether ``tenant_id`` has the shape the ``tenants`` table takes (a hint may name it)."""
    return (
        len(tenant_id) <= TENANT_ID_LENGTH
        and re.fullmatch(TENANT_ID_PATTERN, tenant_id) is not None
    )


class UnknownTenantError(TenantError, NotFoundError):
    """No tenant has this id (quoted with escapes); ``cli_hint`` names the command that
    creates one when the id could be created."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"unknown tenant {echoed(tenant_id)}")
        if creatable_tenant_id(tenant_id):
            self.cli_hint = f"create it with `hartonomous tenants create {tenant_id}`"


class TenantDisabledError(TenantError, ConflictError):
    """The tenant exists but is disabled; ``cli_hint`` names the command that re-enables it."""

    code = "tenant-disabled"

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        super().__init__(f"tenant {tenant_id!r} is disabled")
        if creatable_tenant_id(tenant_id):
            self.cli_hint = f"`hartonomous tenants enable {tenant_id}` re-enables it"


class TenantExistsError(TenantError, ConflictError):
    """``create`` was asked for an id that is already taken."""


class InvalidTenantError(TenantError, UsageError):
    """A tenant id or display name the ``tenants`` table would refuse."""


@dataclass(frozen=True)
class Tenant:
    """One tenant; ``holdings`` and ``principals`` count what it owns (0 when just created)."""

    tenant_id: str
    display_name: str
    state: TenantState
    created_at: datetime
    updated_at: datetime
    holdings: int = 0
    principals: int = 0


def validate_tenant_id(tenant_id: str) -> None:
    """Raise ``InvalidTenantError`` unless ``tenant_id`` fits the table's pattern and length."""
    if len(tenant_id) > TENANT_ID_LENGTH or not _VALID_ID.fullmatch(tenant_id):
        raise InvalidTenantError(
            f"{echoed(tenant_id)} is not a tenant id: 1-{TENANT_ID_LENGTH} characters, "
            "letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )


def create_tenant(
    connection: Connection, tenant_id: str, display_name: str | None = None
) -> Tenant:
    """Create an active tenant (display name defaults to the id).

    Raises ``InvalidTenantError`` for a malformed id or an over-long name and
    ``TenantExistsError`` when the id, or one differing only in case, is taken (whatever
    its state).
    """
    validate_tenant_id(tenant_id)
    given = tenant_id if display_name is None else display_name.strip()
    problem = display_name_problem(given)
    if problem:
        raise InvalidTenantError(problem)
    # A name from a terminal may carry bytes that are not UTF-8: stored visibly, never refused.
    name = storable_text(given)
    if not ensure_tenant(connection, tenant_id, name):
        existing = connection.execute(
            select(tenants.c.tenant_id).where(func.lower(tenants.c.tenant_id) == tenant_id.lower())
        ).scalar_one_or_none()
        if existing in (None, tenant_id):
            raise TenantExistsError(f"tenant {tenant_id!r} already exists")
        raise TenantExistsError(
            f"tenant {tenant_id!r} already exists as {existing!r} (tenant ids are compared "
            "ignoring case)"
        )
    return get_tenant(connection, tenant_id)


def list_tenants(
    connection: Connection, *, after: str | None = None, limit: int | None = None
) -> list[Tenant]:
    """Tenants by id with their holding and principal counts: every one, or up to ``limit``
    of those after the id ``after``."""
    query = _with_counts()
    if after is not None:
        query = query.where(tenants.c.tenant_id > after)
    query = query.order_by(tenants.c.tenant_id)
    if limit is not None:
        query = query.limit(limit)
    return [_tenant(row) for row in connection.execute(query)]


def get_tenant(connection: Connection, tenant_id: str) -> Tenant:
    """The tenant with its counts.

    Raises ``InvalidTenantError`` for a malformed id, ``UnknownTenantError`` when there is none.
    """
    validate_tenant_id(tenant_id)
    row = connection.execute(_with_counts().where(tenants.c.tenant_id == tenant_id)).first()
    if row is None:
        raise UnknownTenantError(tenant_id)
    return _tenant(row)


def set_tenant_state(connection: Connection, tenant_id: str, state: TenantState) -> Tenant:
    """Disable or re-enable a tenant (idempotent); ``UnknownTenantError`` when there is none."""
    # Ingestion batches committing finish first; every later one sees the change.
    lock_tenant_state(connection, tenant_id, changing=True)
    # Only a real change touches the row, so repeating a command publishes no change event.
    connection.execute(
        update(tenants)
        .where(tenants.c.tenant_id == tenant_id, tenants.c.is_active != (state == "active"))
        .values(
            is_active=state == "active",
            updated_at=func.now(),
            # Taken under the lock: later than every batch's commit before it.
            disabled_at=None if state == "active" else func.clock_timestamp(),
        )
    )
    return get_tenant(connection, tenant_id)


def require_active_tenant(connection: Connection, tenant_id: str) -> None:
    """The check of every tenant-scoped command.

    Raises ``InvalidTenantError`` for a malformed id (a usage error: no `tenants create` could
    make it), ``UnknownTenantError`` (naming ``tenants create``) or ``TenantDisabledError``
    (naming ``tenants enable``).
    """
    validate_tenant_id(tenant_id)
    tenant_state(
        tenant_id,
        connection.execute(
            select(tenants.c.is_active).where(tenants.c.tenant_id == tenant_id)
        ).scalar_one_or_none(),
    )


def require_active_party(
    connection: Connection, tenant_id: str, principal_id: str | None, *, holding: bool = False
) -> None:
    """The check a job makes when it starts and at the end of each transaction that stores
    its work (an ingestion batch, an inference's outcome): the tenant (and the principal,
    when the job has one) still active. Raises ``TenantDisabledError`` or
    ``PrincipalDisabledError`` (and what ``require_active_tenant`` raises).

    ``holding``: first take the tenant's state lock shared until the transaction ends, so that
    no disable commits between this check and the work's commit (security/state_lock.py).
    """
    if holding:
        lock_tenant_state(connection, tenant_id, changing=False)
    require_active_tenant(connection, tenant_id)
    if principal_id is not None:
        require_active_principal(connection, tenant_id, principal_id)


def tenant_state(tenant_id: str, active: bool | None) -> None:
    """Refuse a tenant whose ``is_active`` was read as ``active`` (None: no such row) with
    ``UnknownTenantError`` or ``TenantDisabledError``, for a statement that reads it along
    with other things."""
    if active is None:
        raise UnknownTenantError(tenant_id)
    if not active:
        raise TenantDisabledError(tenant_id)


def _with_counts() -> Select[Any]:
    holding_count = (
        select(func.count())
        .where(holdings.c.tenant_id == tenants.c.tenant_id)
        .scalar_subquery()
        .label("holdings")
    )
    principal_count = (
        select(func.count())
        .where(principals.c.tenant_id == tenants.c.tenant_id)
        .scalar_subquery()
        .label("principals")
    )
    return select(
        tenants.c.tenant_id,
        tenants.c.display_name,
        tenants.c.is_active,
        tenants.c.created_at,
        tenants.c.updated_at,
        holding_count,
        principal_count,
    )


def _tenant(row: Row[Any]) -> Tenant:
    mapping = row._mapping
    return Tenant(
        tenant_id=mapping["tenant_id"],
        display_name=mapping["display_name"],
        state="active" if mapping["is_active"] else "disabled",
        created_at=mapping["created_at"],
        updated_at=mapping["updated_at"],
        holdings=mapping["holdings"],
        principals=mapping["principals"],
    )
