"""Tenant administration: tenants, their principals and API keys (admin only; docs/security.md).

One function per use case, called by ``hartonomous tenants|principals|keys`` and by the
``/v1/tenants`` routes. The rules and SQL live in ``hartonomous.security`` (tenants.py,
principals.py, keys.py); this layer opens the transactions, checks that the tenant and
principal named exist (``UnknownTenantError`` / ``UnknownPrincipalError``, 404) and pages
listings with signed cursors (``services.pagination``). Tenant administration spans tenants, so
it runs on ``platform.maintenance_engine`` as a whole-platform administrator would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection

from hartonomous.errors import InvalidCursorError, UsageError
from hartonomous.security import keys as key_store
from hartonomous.security import principals as principal_store
from hartonomous.security import tenants as tenant_store
from hartonomous.security.key_cache import forget_verified_keys
from hartonomous.security.keys import ApiKey, IssuedKey
from hartonomous.security.principals import Principal, PrincipalKind, PrincipalState
from hartonomous.security.roles import Role
from hartonomous.security.tenants import Tenant, TenantState
from hartonomous.services.pagination import Page, cursor_codec
from hartonomous.services.platform import Platform

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "RotatedKey",
    "create_key",
    "create_principal",
    "create_tenant",
    "list_keys",
    "list_principals",
    "list_tenants",
    "revoke_key",
    "rotate_key",
    "set_tenant_state",
    "show_principal",
    "show_tenant",
    "update_principal",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
T = TypeVar("T")


@dataclass(frozen=True)
class RotatedKey:
    """A rotation's outcome: the new key (its token shown once) and the old key, revoked."""

    new: IssuedKey
    old: ApiKey


def create_tenant(platform: Platform, tenant_id: str, display_name: str | None = None) -> Tenant:
    """A new active tenant; raises ``InvalidTenantError`` (400) or ``TenantExistsError`` (409)."""
    with platform.maintenance_engine.begin() as connection:
        return tenant_store.create_tenant(connection, tenant_id, display_name)


def list_tenants(
    platform: Platform, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Tenant]:
    """Tenants by id, ``limit`` (1-500) a page; ``InvalidCursorError`` for a cursor we did not
    issue for this listing."""
    _check_limit(limit)
    codec = cursor_codec(platform.maintenance_engine)
    after = (
        None
        if cursor is None
        else _text_position(codec.decode("tenants", None, cursor, filters={}))
    )
    with platform.maintenance_engine.connect() as connection:
        found = tenant_store.list_tenants(connection, after=after, limit=limit + 1)
    return _page(
        found, limit, lambda last: codec.encode("tenants", None, [last.tenant_id], filters={})
    )


def show_tenant(platform: Platform, tenant_id: str) -> Tenant:
    """The tenant; ``UnknownTenantError`` (404) naming it when there is none."""
    with platform.maintenance_engine.connect() as connection:
        return tenant_store.get_tenant(connection, tenant_id)


def set_tenant_state(platform: Platform, tenant_id: str, state: TenantState) -> Tenant:
    """Disable or enable (idempotent). A disabled tenant's keys, ingestion and search stop at
    once and the sync worker refuses its events; ``UnknownTenantError`` when there is none."""
    with _changing_access(platform) as connection:
        tenant_store.get_tenant(connection, tenant_id)
        return tenant_store.set_tenant_state(connection, tenant_id, state)


def create_principal(
    platform: Platform,
    tenant_id: str,
    principal_id: str,
    *,
    role: Role = Role.USER,
    display_name: str | None = None,
    kind: PrincipalKind = "user",
) -> Principal:
    """A new active principal of the tenant with ``role``.

    Raises ``UnknownTenantError`` (404), ``InvalidPrincipalError`` (400) or
    ``PrincipalExistsError`` (409).
    """
    with platform.maintenance_engine.begin() as connection:
        tenant_store.get_tenant(connection, tenant_id)
        return principal_store.create_principal(
            connection, tenant_id, principal_id, role=role, display_name=display_name, kind=kind
        )


def list_principals(
    platform: Platform, tenant_id: str, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Principal]:
    """The tenant's principals by id; ``UnknownTenantError`` (404), ``InvalidCursorError``."""
    _check_limit(limit)
    codec = cursor_codec(platform.maintenance_engine)
    after = (
        _text_position(codec.decode("principals", tenant_id, cursor, filters={}))
        if cursor is not None
        else None
    )
    with platform.maintenance_engine.connect() as connection:
        tenant_store.get_tenant(connection, tenant_id)
        found = principal_store.list_principals(connection, tenant_id, after=after, limit=limit + 1)
    return _page(
        found,
        limit,
        lambda last: codec.encode("principals", tenant_id, [last.principal_id], filters={}),
    )


def show_principal(platform: Platform, tenant_id: str, principal_id: str) -> Principal:
    """The principal; ``UnknownTenantError`` or ``UnknownPrincipalError`` (404)."""
    with platform.maintenance_engine.connect() as connection:
        return _principal(connection, tenant_id, principal_id)


def update_principal(
    platform: Platform,
    tenant_id: str,
    principal_id: str,
    *,
    state: PrincipalState | None = None,
    role: Role | None = None,
) -> Principal:
    """Disable, enable and/or change the role (idempotent). A disabled principal's keys stop
    at once and the sync worker refuses its events; a new role applies to its next request."""
    with _changing_access(platform) as connection:
        _principal(connection, tenant_id, principal_id)
        return principal_store.update_principal(
            connection, tenant_id, principal_id, state=state, role=role
        )


def create_key(
    platform: Platform,
    tenant_id: str,
    principal_id: str,
    *,
    label: str = "",
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A new key for the principal; its token is in the answer and nowhere else.

    Raises ``UnknownTenantError`` / ``UnknownPrincipalError`` (404), ``InvalidKeyOptionError``
    (400) for a long label or an expiry not in the future.
    """
    with platform.maintenance_engine.begin() as connection:
        _principal(connection, tenant_id, principal_id)
        return key_store.issue_key(
            connection, tenant_id, principal_id, label=label, expires_at=expires_at
        )


def list_keys(
    platform: Platform,
    tenant_id: str,
    *,
    principal_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[ApiKey]:
    """The tenant's keys (of one principal if given), oldest first, without secrets or hashes."""
    _check_limit(limit)
    codec = cursor_codec(platform.maintenance_engine)
    filters = {"principal_id": principal_id}
    after = (
        None
        if cursor is None
        else _key_position(codec.decode("keys", tenant_id, cursor, filters=filters))
    )
    with platform.maintenance_engine.connect() as connection:
        if principal_id is None:
            tenant_store.get_tenant(connection, tenant_id)
        else:
            _principal(connection, tenant_id, principal_id)
        found = key_store.list_keys(
            connection, tenant_id, principal_id=principal_id, after=after, limit=limit + 1
        )
    return _page(
        found,
        limit,
        lambda last: codec.encode(
            "keys", tenant_id, [last.created_at.isoformat(), last.key_id], filters=filters
        ),
    )


def revoke_key(
    platform: Platform, tenant_id: str, key_id: str, *, grace_seconds: float = 0
) -> ApiKey:
    """Revoke the key now or after ``grace_seconds``; ``UnknownKeyError`` (404),
    ``KeyRevokedError`` (409) when it already is."""
    with _changing_access(platform) as connection:
        tenant_store.get_tenant(connection, tenant_id)
        return key_store.revoke_key(connection, tenant_id, key_id, grace_seconds=grace_seconds)


def rotate_key(
    platform: Platform,
    tenant_id: str,
    key_id: str,
    *,
    grace_seconds: float = 0,
    expires_at: datetime | None = None,
) -> RotatedKey:
    """A new key for the same principal; the old one revoked after ``grace_seconds`` (0: now).
    Both happen in one transaction, or neither."""
    with _changing_access(platform) as connection:
        tenant_store.get_tenant(connection, tenant_id)
        new, old = key_store.rotate_key(
            connection, tenant_id, key_id, grace_seconds=grace_seconds, expires_at=expires_at
        )
    return RotatedKey(new, old)


@contextmanager
def _changing_access(platform: Platform) -> Iterator[Connection]:
    """A transaction on the maintenance engine that changes who may authenticate, or as
    what: once it has ended, this process's verified-key caches forget every key
    (security/key_cache.py), so the change applies to the next request."""
    try:
        with platform.maintenance_engine.begin() as connection:
            yield connection
    finally:
        forget_verified_keys()


def _principal(connection: Connection, tenant_id: str, principal_id: str) -> Principal:
    tenant_store.get_tenant(connection, tenant_id)
    return principal_store.get_principal(connection, tenant_id, principal_id)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit must be 1-{MAX_LIMIT} (it is {limit})")


def _page(found: list[T], limit: int, cursor_after: Callable[[T], str]) -> Page[T]:
    """A page of ``limit`` items from ``limit + 1`` fetched; the extra one says there is more."""
    if len(found) <= limit:
        return Page(found, None)
    return Page(found[:limit], cursor_after(found[limit - 1]))


def _text_position(position: list[Any]) -> str:
    if len(position) != 1 or not isinstance(position[0], str):
        raise InvalidCursorError("cursor holds no position of this listing")
    return position[0]


def _key_position(position: list[Any]) -> tuple[datetime, str]:
    try:
        created, key_id = position
        return datetime.fromisoformat(created), str(key_id)
    except (TypeError, ValueError):
        raise InvalidCursorError("cursor holds no position of this listing") from None
