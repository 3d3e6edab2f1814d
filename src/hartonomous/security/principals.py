"""Tenants and principals: idempotent creation, principal administration, API key issue.

A principal is ``active`` or ``disabled`` (``principals.is_active``) and holds one ``Role``
(``principals.role``), chosen at creation and changeable. A disabled principal's keys stop
authenticating at once and the sync worker refuses its events (docs/security.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Select, case, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hartonomous.db.tables import api_keys, principals, tenants
from hartonomous.errors import ConflictError, NotFoundError, UsageError
from hartonomous.security.api_keys import issue_api_key
from hartonomous.security.roles import Role
from hartonomous.security.state_lock import lock_tenant_state
from hartonomous.storable import storable_text

PrincipalState = Literal["active", "disabled"]
PrincipalKind = Literal["user", "service"]
_DISPLAY_NAME_LENGTH = 256  # principals.display_name

PRINCIPAL_ID_LENGTH = 256
"""Characters a principal id may have: the ``principal_id`` columns are ``varchar(256)``."""


class InvalidPrincipalError(UsageError, ValueError):
    """A principal id the ``principal_id`` columns would refuse; the message names the limit."""


def validate_principal_id(principal_id: str) -> None:
    """Raise ``InvalidPrincipalError`` unless ``principal_id`` has 1-256 characters that
    PostgreSQL text can hold (no NUL, no unpaired surrogate: an id is refused, never altered)."""
    shown = principal_id if len(principal_id) <= 40 else f"{principal_id[:40]}…"
    if not 0 < len(principal_id) <= PRINCIPAL_ID_LENGTH:
        raise InvalidPrincipalError(
            f"{shown!r} is not a principal id: 1-{PRINCIPAL_ID_LENGTH} characters "
            f"(it has {len(principal_id)})"
        )
    if storable_text(principal_id) != principal_id:
        raise InvalidPrincipalError(
            f"{shown!r} is not a principal id: it holds NUL or a character that is not UTF-8"
        )


def ensure_tenant(connection: Connection, tenant_id: str, display_name: str) -> bool:
    """Create the tenant if missing; True when it was created (False too when an id differing
    only in case exists: the ids are unique ignoring case)."""
    created = connection.execute(
        pg_insert(tenants)
        .values(tenant_id=tenant_id, display_name=display_name)
        .on_conflict_do_nothing()
        .returning(tenants.c.tenant_id)
    ).first()
    return created is not None


def ensure_principal(
    connection: Connection,
    tenant_id: str,
    principal_id: str,
    display_name: str,
    kind: str,
    *,
    role: Role = Role.USER,
) -> bool:
    """Create the principal if missing; True when it was created."""
    created = connection.execute(
        pg_insert(principals)
        .values(
            tenant_id=tenant_id,
            principal_id=principal_id,
            display_name=display_name,
            kind=kind,
            role=role.value,
        )
        .on_conflict_do_nothing(index_elements=[principals.c.tenant_id, principals.c.principal_id])
        .returning(principals.c.principal_id)
    ).first()
    return created is not None


def create_api_key(
    connection: Connection,
    tenant_id: str,
    principal_id: str,
    label: str,
    expires_at: datetime | None = None,
) -> str:
    """Store a new key's hash for the principal and return the token (the only time it exists).

    ``expires_at`` (None: never) is when the key stops authenticating.
    """
    issued = issue_api_key()
    connection.execute(
        insert(api_keys).values(
            key_id=issued.key_id,
            tenant_id=tenant_id,
            principal_id=principal_id,
            secret_sha256=issued.secret_sha256,
            label=label,
            expires_at=expires_at,
        )
    )
    return issued.token


class UnknownPrincipalError(NotFoundError):
    """The tenant has no principal with this id (both quoted with escapes); ``cli_hint`` names
    the command that makes one when both ids are plain words a command line can carry."""

    code = "unknown-principal"

    def __init__(self, tenant_id: str, principal_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} has no principal {principal_id!r}")
        if all(_plain_word(value) for value in (tenant_id, principal_id)):
            self.cli_hint = (
                f"create it with `hartonomous principals create {tenant_id} {principal_id}`"
            )


def _plain_word(value: str) -> bool:
    return (
        0 < len(value) <= PRINCIPAL_ID_LENGTH and value.isprintable() and value.split() == [value]
    )


class PrincipalExistsError(ConflictError):
    """``create`` was asked for a principal id the tenant already has."""

    code = "principal-exists"


@dataclass(frozen=True)
class Principal:
    """One principal of a tenant; ``active_keys`` counts its unrevoked, unexpired keys."""

    tenant_id: str
    principal_id: str
    display_name: str
    kind: PrincipalKind
    role: Role
    state: PrincipalState
    created_at: datetime
    updated_at: datetime
    active_keys: int = 0


# Control characters (Unicode category Cc: C0, DEL, C1) would be stored unseen or break a line
# of every listing that shows the name; a name typed by a person never needs them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def display_name_problem(name: str) -> str | None:
    """Why ``name`` (stripped, as given: before ``storable_text``) cannot be a tenant's or
    principal's display name, or None: holding a control character (named by code point and
    position), empty, or over ``_DISPLAY_NAME_LENGTH`` characters once storable. One rule for
    the CLI, the API and the admin UI."""
    found = _CONTROL.search(name)
    if found:
        return (
            f"display name must not hold control characters: U+{ord(found.group()):04X} at "
            f"character {found.start() + 1}"
        )
    size = len(storable_text(name))
    if not size or size > _DISPLAY_NAME_LENGTH:
        return f"display name must be 1-{_DISPLAY_NAME_LENGTH} characters (it has {size})"
    return None


def create_principal(
    connection: Connection,
    tenant_id: str,
    principal_id: str,
    *,
    role: Role = Role.USER,
    display_name: str | None = None,
    kind: PrincipalKind = "user",
) -> Principal:
    """Create an active principal of an existing tenant (display name defaults to the id).

    Raises ``InvalidPrincipalError`` (a bad id or name), ``PrincipalExistsError`` when the
    tenant already has it; the caller checks the tenant exists first.
    """
    validate_principal_id(principal_id)
    _require_addressable(principal_id)
    given = principal_id if display_name is None else display_name.strip()
    problem = display_name_problem(given)
    if problem:
        raise InvalidPrincipalError(problem)
    name = storable_text(given)
    if not ensure_principal(connection, tenant_id, principal_id, name, kind, role=role):
        raise PrincipalExistsError(f"tenant {tenant_id!r} already has principal {principal_id!r}")
    return get_principal(connection, tenant_id, principal_id)


def _require_addressable(principal_id: str) -> None:
    # A new id must be usable as one URL path segment (/v1/tenants/T/principals/ID) and read
    # back as typed: no '/', not '.' or '..', no control character, no surrounding space.
    shown = principal_id if len(principal_id) <= 40 else f"{principal_id[:40]}…"
    if (
        "/" in principal_id
        or principal_id in (".", "..")
        or principal_id != principal_id.strip()
        or any(not character.isprintable() for character in principal_id)
    ):
        raise InvalidPrincipalError(
            f"{shown!r} is not a principal id: no '/', not '.' or '..', no control characters "
            "or surrounding spaces"
        )


def get_principal(connection: Connection, tenant_id: str, principal_id: str) -> Principal:
    """The principal; ``InvalidPrincipalError`` for a malformed id, ``UnknownPrincipalError``
    when the tenant has none by this id."""
    validate_principal_id(principal_id)
    row = connection.execute(
        _with_key_count().where(
            principals.c.tenant_id == tenant_id, principals.c.principal_id == principal_id
        )
    ).first()
    if row is None:
        raise UnknownPrincipalError(tenant_id, principal_id)
    return _principal(row._mapping)


def list_principals(
    connection: Connection, tenant_id: str, *, after: str | None, limit: int
) -> list[Principal]:
    """Up to ``limit`` principals of the tenant by id, those after ``after`` (a principal id)."""
    query = _with_key_count().where(principals.c.tenant_id == tenant_id)
    if after is not None:
        query = query.where(principals.c.principal_id > after)
    rows = connection.execute(query.order_by(principals.c.principal_id).limit(limit))
    return [_principal(row._mapping) for row in rows]


def update_principal(
    connection: Connection,
    tenant_id: str,
    principal_id: str,
    *,
    state: PrincipalState | None = None,
    role: Role | None = None,
) -> Principal:
    """Set the state and/or role (idempotent: an unchanged row is not written, so repeating a
    command publishes no change event); ``UnknownPrincipalError`` when there is none."""
    values: dict[str, Any] = {}
    changed = []
    if state is not None:
        values["is_active"] = state == "active"
        # Taken under the tenant's state lock: later than every batch's commit before it;
        # kept when the state does not change (a role change of a disabled principal).
        values["disabled_at"] = (
            None
            if state == "active"
            else case(
                (principals.c.is_active, func.clock_timestamp()),
                else_=principals.c.disabled_at,
            )
        )
        changed.append(principals.c.is_active != values["is_active"])
    if role is not None:
        values["role"] = role.value
        changed.append(principals.c.role != role.value)
    if values:
        if state is not None:
            # Ingestion batches committing finish first; every later one sees the change.
            lock_tenant_state(connection, tenant_id, changing=True)
        connection.execute(
            update(principals)
            .where(
                principals.c.tenant_id == tenant_id,
                principals.c.principal_id == principal_id,
                changed[0] if len(changed) == 1 else (changed[0] | changed[1]),
            )
            .values(**values, updated_at=func.now())
        )
    return get_principal(connection, tenant_id, principal_id)


def _with_key_count() -> Select[Any]:
    active_keys = (
        select(func.count())
        .where(
            api_keys.c.tenant_id == principals.c.tenant_id,
            api_keys.c.principal_id == principals.c.principal_id,
            (api_keys.c.revoked_at.is_(None)) | (api_keys.c.revoked_at > func.now()),
            (api_keys.c.expires_at.is_(None)) | (api_keys.c.expires_at > func.now()),
        )
        .scalar_subquery()
        .label("active_keys")
    )
    return select(
        principals.c.tenant_id,
        principals.c.principal_id,
        principals.c.display_name,
        principals.c.kind,
        principals.c.role,
        principals.c.is_active,
        principals.c.created_at,
        principals.c.updated_at,
        active_keys,
    )


def _principal(row: Any) -> Principal:
    return Principal(
        tenant_id=row["tenant_id"],
        principal_id=row["principal_id"],
        display_name=row["display_name"],
        kind=row["kind"],
        role=Role(row["role"]),
        state="active" if row["is_active"] else "disabled",
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        active_keys=row["active_keys"],
    )


class PrincipalDisabledError(ConflictError):
    """The principal exists but is disabled; ``cli_hint`` names the command that re-enables
    it when both ids are plain words a command line can carry (an HTTP answer never names a
    command)."""

    code = "principal-disabled"

    def __init__(self, tenant_id: str, principal_id: str) -> None:
        self.tenant_id = tenant_id
        self.principal_id = principal_id
        super().__init__(f"principal {principal_id!r} of tenant {tenant_id!r} is disabled")
        if all(_plain_word(value) for value in (tenant_id, principal_id)):
            self.cli_hint = (
                f"`hartonomous principals enable {tenant_id} {principal_id}` re-enables it"
            )


def require_active_principal(connection: Connection, tenant_id: str, principal_id: str) -> None:
    """The check of a command acting for a principal: ``PrincipalDisabledError`` when it is
    disabled. A principal id the tenant does not have passes: the CLI records it as given."""
    active = connection.execute(
        select(principals.c.is_active).where(
            principals.c.tenant_id == tenant_id, principals.c.principal_id == principal_id
        )
    ).scalar_one_or_none()
    if active is False:
        raise PrincipalDisabledError(tenant_id, principal_id)
