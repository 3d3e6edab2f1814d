"""API key administration: list, revoke and rotate a tenant's keys (docs/security.md).

Listings never carry a secret or its hash. A key is ``active``, ``revoked`` (``revoked_at``
has passed) or ``expired`` (``expires_at`` has passed); a key revoked with a grace period stays
``active`` until its ``revoked_at``. Authentication (``security.authentication``) applies the
same rule, so a revocation takes effect at once in every process on the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Select, func, select, update

from hartonomous.db.tables import api_keys
from hartonomous.errors import ConflictError, NotFoundError, UsageError
from hartonomous.instants import in_utc, rfc3339
from hartonomous.security.api_keys import KEY_ID_PATTERN, parse_api_key
from hartonomous.security.principals import create_api_key
from hartonomous.storable import storable_text

KeyState = Literal["active", "revoked", "expired"]
LABEL_LENGTH = 128  # api_keys.label


class UnknownKeyError(NotFoundError):
    """The tenant has no key with this id."""

    code = "unknown-key"

    def __init__(self, tenant_id: str, key_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} has no API key {key_id!r}")


class KeyRevokedError(ConflictError):
    """``rotate`` or ``revoke`` of a key that is already revoked."""

    code = "key-revoked"


class KeyRevocationPendingError(ConflictError):
    """``rotate`` of a key already rotated or revoked with a grace period: it has a successor
    (or is on its way out) and a second successor would be a second live key."""

    code = "key-revocation-pending"


class InvalidKeyOptionError(UsageError):
    """A label, expiry or grace period a key cannot have; the message names which."""


class InvalidKeyLabelError(InvalidKeyOptionError):
    """A label a key cannot have (too long): a form shows it beside the label."""


@dataclass(frozen=True)
class ApiKey:
    """One key as an administrator sees it: never its secret, never its hash."""

    key_id: str
    tenant_id: str
    principal_id: str
    label: str
    state: KeyState
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its token: the token is shown this once and stored nowhere."""

    key: ApiKey
    token: str


def issue_key(
    connection: Connection,
    tenant_id: str,
    principal_id: str,
    *,
    label: str = "",
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A new key for an existing principal (the caller checks tenant and principal).

    Raises ``InvalidKeyOptionError`` for a label over 128 characters or an expiry not in the
    future (by the database clock).
    """
    label = storable_text(label)  # a free text: stored visibly, never refused
    if len(label) > LABEL_LENGTH:
        raise InvalidKeyLabelError(
            f"label must be at most {LABEL_LENGTH} characters (it has {len(label)})"
        )
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidKeyOptionError("expires_at must carry a time zone (e.g. 2030-01-01Z)")
        try:
            expires_at = in_utc(expires_at)
        except ValueError as exc:
            raise InvalidKeyOptionError(f"expires_at {exc}") from None
        if connection.execute(select(func.now() >= expires_at)).scalar_one():
            raise InvalidKeyOptionError(f"expires_at {expires_at.isoformat()} is not in the future")
    token = create_api_key(connection, tenant_id, principal_id, label, expires_at)
    key_id, _ = parse_api_key(token)
    return IssuedKey(get_key(connection, tenant_id, key_id), token)


def validate_key_id(key_id: str) -> None:
    """Raise ``InvalidKeyOptionError`` unless ``key_id`` is shaped like the ids we issue."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        shown = key_id if len(key_id) <= 40 else f"{key_id[:40]}…"
        raise InvalidKeyOptionError(
            f"{shown!r} is not a key id: 16 hexadecimal digits (the part after hk_)"
        )


def get_key(connection: Connection, tenant_id: str, key_id: str) -> ApiKey:
    """The tenant's key; ``InvalidKeyOptionError`` for a malformed id, ``UnknownKeyError``
    when it has none by this id."""
    validate_key_id(key_id)
    row = connection.execute(
        _listed().where(api_keys.c.tenant_id == tenant_id, api_keys.c.key_id == key_id)
    ).first()
    if row is None:
        raise UnknownKeyError(tenant_id, key_id)
    return _key(row._mapping)


def list_keys(
    connection: Connection,
    tenant_id: str,
    *,
    principal_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[ApiKey]:
    """Up to ``limit`` keys of the tenant (of one principal if given), oldest first, after
    ``after`` = (created_at, key_id) of the last key of the previous page."""
    query = _listed().where(api_keys.c.tenant_id == tenant_id)
    if principal_id is not None:
        query = query.where(api_keys.c.principal_id == principal_id)
    if after is not None:
        query = query.where(
            (api_keys.c.created_at > after[0])
            | ((api_keys.c.created_at == after[0]) & (api_keys.c.key_id > after[1]))
        )
    rows = connection.execute(query.order_by(api_keys.c.created_at, api_keys.c.key_id).limit(limit))
    return [_key(row._mapping) for row in rows]


def revoke_key(
    connection: Connection, tenant_id: str, key_id: str, *, grace_seconds: float = 0
) -> ApiKey:
    """Revoke the key, at once or after ``grace_seconds``.

    Raises ``UnknownKeyError``, ``KeyRevokedError`` when it is already revoked (a pending
    grace period is shortened, never lengthened), ``InvalidKeyOptionError`` for a negative grace.
    """
    if grace_seconds < 0:
        raise InvalidKeyOptionError("grace period must not be negative")
    key = get_key(connection, tenant_id, key_id)
    if key.state == "revoked":
        when = "" if key.revoked_at is None else f" at {rfc3339(key.revoked_at)}"
        raise KeyRevokedError(f"API key {key_id} was revoked{when}")
    at = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, grace_seconds)
    connection.execute(
        update(api_keys)
        .where(api_keys.c.tenant_id == tenant_id, api_keys.c.key_id == key_id)
        .values(revoked_at=func.least(func.coalesce(api_keys.c.revoked_at, at), at))
    )
    return get_key(connection, tenant_id, key_id)


def rotate_key(
    connection: Connection,
    tenant_id: str,
    key_id: str,
    *,
    grace_seconds: float = 0,
    expires_at: datetime | None = None,
    label: str | None = None,
) -> tuple[IssuedKey, ApiKey]:
    """A new key for the same principal (same label unless given), and the old one revoked
    after ``grace_seconds`` (0: at once). Returns (new key with its token, old key).

    A key is rotated once: ``KeyRevocationPendingError`` (409) when its revocation is already
    set (rotated before, or revoked with a grace period still running), ``KeyRevokedError``
    (409) when it is revoked or expired. The key's row is locked first, so of concurrent
    rotations of one key exactly one succeeds and the others get the 409. Also raises what
    ``issue_key`` raises; nothing is written when one does (the caller's transaction).
    """
    validate_key_id(key_id)
    # Serialise rotations (and revocations) of this key: the check below then sees theirs.
    connection.execute(
        select(api_keys.c.key_id)
        .where(api_keys.c.tenant_id == tenant_id, api_keys.c.key_id == key_id)
        .with_for_update()
    )
    old = get_key(connection, tenant_id, key_id)
    if old.state != "active":
        raise KeyRevokedError(f"API key {key_id} is {old.state}: issue a new key instead")
    if old.revoked_at is not None:
        raise KeyRevocationPendingError(
            f"API key {key_id} was already rotated or revoked: it stops at "
            f"{rfc3339(old.revoked_at)}; rotate its successor or issue a new key instead"
        )
    issued = issue_key(
        connection,
        tenant_id,
        old.principal_id,
        label=old.label if label is None else label,
        expires_at=expires_at,
    )
    return issued, revoke_key(connection, tenant_id, key_id, grace_seconds=grace_seconds)


def _listed() -> Select[Any]:
    now = func.now()
    return select(
        api_keys.c.key_id,
        api_keys.c.tenant_id,
        api_keys.c.principal_id,
        api_keys.c.label,
        api_keys.c.created_at,
        api_keys.c.expires_at,
        api_keys.c.revoked_at,
        api_keys.c.last_used_at,
        (api_keys.c.revoked_at <= now).label("is_revoked"),
        (api_keys.c.expires_at <= now).label("is_expired"),
    )


def _key(row: Any) -> ApiKey:
    state: KeyState = (
        "revoked" if row["is_revoked"] else "expired" if row["is_expired"] else "active"
    )
    return ApiKey(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        principal_id=row["principal_id"],
        label=row["label"],
        state=state,
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )
