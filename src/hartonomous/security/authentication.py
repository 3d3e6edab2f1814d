"""Who is calling: an API key (`Authorization: Bearer hk_<key id>_<secret>`) to a `Caller`.

A key authenticates only while it is unrevoked and unexpired, and its principal and tenant are
both active (docs/security.md). Every refusal is a `NotAuthenticatedError` whose message says
which of those failed, without ever echoing the secret.

`api_keys.last_used_at` is kept to within `LAST_USED_RESOLUTION`: the authenticating query
reads it, and only when it is older than that (or unset) does a request write it, so a busy
key costs one write a minute, whichever process serves it, and nothing is lost at shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, or_, select, update

from hartonomous.db.tables import api_keys, principals, tenants
from hartonomous.errors import NotAuthenticatedError
from hartonomous.security.api_keys import InvalidApiKeyError, parse_api_key, secret_matches
from hartonomous.security.roles import Role

__all__ = ["LAST_USED_RESOLUTION", "Caller", "authenticate"]

LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Caller:
    """The authenticated principal behind a request: its tenant, id, role and key id."""

    tenant_id: str
    principal_id: str
    role: Role
    key_id: str


def authenticate(engine: Engine, token: str) -> Caller:
    """The caller a token belongs to.

    Raises ``NotAuthenticatedError`` when the token is malformed, unknown, revoked, expired,
    or its principal or tenant is disabled.
    """
    try:
        key_id, secret = parse_api_key(token)
    except InvalidApiKeyError as exc:
        raise NotAuthenticatedError(str(exc)) from None
    with engine.connect() as connection:
        row = connection.execute(
            select(
                api_keys.c.tenant_id,
                api_keys.c.principal_id,
                api_keys.c.secret_sha256,
                api_keys.c.expires_at,
                api_keys.c.revoked_at,
                api_keys.c.last_used_at,
                principals.c.role,
                principals.c.is_active.label("principal_active"),
                tenants.c.is_active.label("tenant_active"),
            )
            .join(
                principals,
                (principals.c.tenant_id == api_keys.c.tenant_id)
                & (principals.c.principal_id == api_keys.c.principal_id),
            )
            .join(tenants, tenants.c.tenant_id == api_keys.c.tenant_id)
            .where(api_keys.c.key_id == key_id)
        ).first()
    if row is None or not secret_matches(secret, row.secret_sha256):
        raise NotAuthenticatedError(f"API key {key_id} is not known")
    now = datetime.now(UTC)
    # A revocation with a grace period (key rotation) sets revoked_at in the future.
    if row.revoked_at is not None and row.revoked_at <= now:
        raise NotAuthenticatedError(f"API key {key_id} was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise NotAuthenticatedError(f"API key {key_id} expired at {row.expires_at.isoformat()}")
    if not row.tenant_active:
        raise NotAuthenticatedError(f"API key {key_id}: tenant {row.tenant_id!r} is disabled")
    if not row.principal_active:
        raise NotAuthenticatedError(f"API key {key_id}: principal {row.principal_id!r} is disabled")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        _record_use(engine, key_id, now)
    return Caller(
        tenant_id=row.tenant_id, principal_id=row.principal_id, role=Role(row.role), key_id=key_id
    )


def _record_use(engine: Engine, key_id: str, now: datetime) -> None:
    # The condition makes concurrent requests of other processes skip a write just made.
    with engine.begin() as connection:
        connection.execute(
            update(api_keys)
            .where(
                api_keys.c.key_id == key_id,
                or_(
                    api_keys.c.last_used_at.is_(None),
                    api_keys.c.last_used_at <= now - LAST_USED_RESOLUTION,
                ),
            )
            .values(last_used_at=now)
        )
