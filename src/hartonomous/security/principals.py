"""Tenants and principals: idempotent creation and API key issue."""

from __future__ import annotations

from sqlalchemy import Connection, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hartonomous.db.tables import api_keys, principals, tenants
from hartonomous.errors import UsageError
from hartonomous.security.api_keys import issue_api_key

PRINCIPAL_ID_LENGTH = 256
"""Characters a principal id may have: the ``principal_id`` columns are ``varchar(256)``."""


class InvalidPrincipalError(UsageError, ValueError):
    """A principal id the ``principal_id`` columns would refuse; the message names the limit."""


def validate_principal_id(principal_id: str) -> None:
    """Raise ``InvalidPrincipalError`` unless ``principal_id`` has 1-256 characters."""
    if not 0 < len(principal_id) <= PRINCIPAL_ID_LENGTH:
        shown = principal_id if len(principal_id) <= 40 else f"{principal_id[:40]}…"
        raise InvalidPrincipalError(
            f"{shown!r} is not a principal id: 1-{PRINCIPAL_ID_LENGTH} characters "
            f"(it has {len(principal_id)})"
        )


def ensure_tenant(connection: Connection, tenant_id: str, display_name: str) -> bool:
    """Create the tenant if missing; True when it was created."""
    created = connection.execute(
        pg_insert(tenants)
        .values(tenant_id=tenant_id, display_name=display_name)
        .on_conflict_do_nothing(index_elements=[tenants.c.tenant_id])
        .returning(tenants.c.tenant_id)
    ).first()
    return created is not None


def ensure_principal(
    connection: Connection, tenant_id: str, principal_id: str, display_name: str, kind: str
) -> bool:
    """Create the principal if missing; True when it was created."""
    created = connection.execute(
        pg_insert(principals)
        .values(
            tenant_id=tenant_id, principal_id=principal_id, display_name=display_name, kind=kind
        )
        .on_conflict_do_nothing(index_elements=[principals.c.tenant_id, principals.c.principal_id])
        .returning(principals.c.principal_id)
    ).first()
    return created is not None


def create_api_key(connection: Connection, tenant_id: str, principal_id: str, label: str) -> str:
    """Store a new key's hash for the principal and return the token (the only time it exists)."""
    issued = issue_api_key()
    connection.execute(
        insert(api_keys).values(
            key_id=issued.key_id,
            tenant_id=tenant_id,
            principal_id=principal_id,
            secret_sha256=issued.secret_sha256,
            label=label,
        )
    )
    return issued.token
