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

__all__ = [
    "LAST_USED_RESOLUTION",
    "Caller",
    "KeyPrincipalDisabledError",
    "KeyTenantDisabledError",
    "StoredKey",
    "admit_key",
    "admit_verified_key",
    "authenticate",
    "load_key",
    "parse_token",
    "record_use",
    "use_is_due",
]

LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Caller:
    """The authenticated principal behind a request: its tenant, id, role and key id."""

    tenant_id: str
    principal_id: str
    role: Role
    key_id: str


class KeyTenantDisabledError(NotAuthenticatedError):
    """401: the key's tenant is disabled (found at authentication, or deeper in a request
    admitted by a key verified before the change reached this process: api/problems.py)."""

    code = "tenant-disabled"

    def __init__(self, key_id: str, tenant_id: str) -> None:
        super().__init__(f"API key {key_id}: tenant {tenant_id!r} is disabled")


class KeyPrincipalDisabledError(NotAuthenticatedError):
    """401: the key's principal is disabled (as ``KeyTenantDisabledError``)."""

    code = "principal-disabled"

    def __init__(self, key_id: str, principal_id: str) -> None:
        super().__init__(f"API key {key_id}: principal {principal_id!r} is disabled")


@dataclass(frozen=True)
class StoredKey:
    """What the database says of one key: whom it authenticates and until when.

    ``secret_sha256`` is the stored hash the presented secret must match; the rest are the
    columns :func:`admit_key` checks (docs/security.md, "API keys").
    """

    key_id: str
    caller: Caller
    secret_sha256: bytes
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    tenant_active: bool
    principal_active: bool


def authenticate(engine: Engine, token: str) -> Caller:
    """The caller a token belongs to.

    Raises ``NotAuthenticatedError`` when the token is malformed, unknown, revoked, expired,
    or its principal or tenant is disabled.
    """
    key_id, secret = parse_token(token)
    stored = load_key(engine, key_id)
    now = datetime.now(UTC)
    caller = admit_key(stored, key_id, secret, now)
    assert stored is not None  # admit_key refuses an unknown key
    if use_is_due(stored.last_used_at, now):
        record_use(engine, key_id, now)
    return caller


def parse_token(token: str) -> tuple[str, str]:
    """(key id, secret) of a bearer token; ``NotAuthenticatedError`` when it is malformed."""
    try:
        return parse_api_key(token)
    except InvalidApiKeyError as exc:
        raise NotAuthenticatedError(str(exc)) from None


def load_key(engine: Engine, key_id: str) -> StoredKey | None:
    """The key ``key_id`` with its principal's role and both active flags, in one indexed
    query; None when there is no such key."""
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
    if row is None:
        return None
    return StoredKey(
        key_id=key_id,
        caller=Caller(row.tenant_id, row.principal_id, Role(row.role), key_id),
        secret_sha256=bytes(row.secret_sha256),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        tenant_active=row.tenant_active,
        principal_active=row.principal_active,
    )


def admit_key(stored: StoredKey | None, key_id: str, secret: str, now: datetime) -> Caller:
    """The caller of ``stored`` when ``secret`` matches it and it may authenticate at ``now``;
    ``NotAuthenticatedError`` saying which check failed otherwise (never echoing the secret)."""
    if stored is None or not secret_matches(secret, stored.secret_sha256):
        raise NotAuthenticatedError(f"API key {key_id} is not known")
    return admit_verified_key(stored, now)


def admit_verified_key(stored: StoredKey, now: datetime) -> Caller:
    """The caller of a key whose secret was verified before (a web session holds its key id,
    docs/admin-ui.md) while it may still authenticate at ``now``: unrevoked, unexpired, its
    tenant and principal active; ``NotAuthenticatedError`` saying which failed otherwise."""
    key_id = stored.key_id
    # A revocation with a grace period (key rotation) sets revoked_at in the future.
    if stored.revoked_at is not None and stored.revoked_at <= now:
        raise NotAuthenticatedError(f"API key {key_id} was revoked")
    if stored.expires_at is not None and stored.expires_at <= now:
        raise NotAuthenticatedError(f"API key {key_id} expired at {stored.expires_at.isoformat()}")
    caller = stored.caller
    if not stored.tenant_active:
        raise KeyTenantDisabledError(key_id, caller.tenant_id)
    if not stored.principal_active:
        raise KeyPrincipalDisabledError(key_id, caller.principal_id)
    return caller


def use_is_due(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a use at ``now`` must be written: ``last_used_at`` is unset or older than
    ``LAST_USED_RESOLUTION``."""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


def record_use(engine: Engine, key_id: str, now: datetime) -> None:
    """Write ``now`` as the key's ``last_used_at`` unless a use within the resolution was."""
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
