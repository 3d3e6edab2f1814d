"""Tenants, principals and their API keys."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
    text,
)

from hartonomous.db.tables.base import (
    TENANT_ID_LENGTH,
    TENANT_ID_PATTERN,
    created_at,
    metadata,
    updated_at,
)

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("display_name", String(256), nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    created_at(),
    updated_at(),
    # When the current disable took effect (None while active): the sync worker still handles
    # the events committed before it (security/state_lock.py, docs/security.md).
    Column("disabled_at", DateTime(timezone=True)),
    CheckConstraint(f"tenant_id ~ '{TENANT_ID_PATTERN}'", name="tenant_id_format"),
    # Policies compare tenant ids ignoring case, so two ids may not differ only in case.
    Index("uq_tenants_tenant_id_ignoring_case", func.lower(text("tenant_id")), unique=True),
    info={"cdc_captured": True},
)

principals = Table(
    "principals",
    metadata,
    Column("tenant_id", String(TENANT_ID_LENGTH), primary_key=True),
    Column("principal_id", String(256), primary_key=True),
    Column("display_name", String(256), nullable=False),
    Column("kind", String(16), nullable=False, server_default=text("'user'")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    # What the principal's keys may do through the API: security/roles.py, docs/security.md.
    Column("role", String(16), nullable=False, server_default=text("'user'")),
    created_at(),
    updated_at(),
    # When the current disable took effect (None while active): the sync worker still handles
    # the events committed before it (security/state_lock.py, docs/security.md).
    Column("disabled_at", DateTime(timezone=True)),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], ondelete="CASCADE"),
    CheckConstraint("kind IN ('user', 'service')", name="kind"),
    CheckConstraint("role IN ('user', 'data-scientist', 'admin')", name="role"),
    CheckConstraint("length(principal_id) > 0", name="principal_id_not_empty"),
    info={"cdc_captured": True},
)

# Only a SHA-256 of the secret part is stored: keys are 256-bit random, so a slow hash adds
# nothing, and the key id lets authentication find the row without scanning.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), nullable=False),
    Column("tenant_id", String(TENANT_ID_LENGTH), nullable=False),
    Column("principal_id", String(256), nullable=False),
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("label", String(128), nullable=False, server_default=text("''")),
    created_at(),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    ForeignKeyConstraint(
        ["tenant_id", "principal_id"],
        ["principals.tenant_id", "principals.principal_id"],
        ondelete="CASCADE",
    ),
    CheckConstraint("octet_length(secret_sha256) = 32", name="secret_sha256_length"),
    # Led by the tenant like every tenant-scoped key (migration 0033, docs/scale-out.md);
    # authentication knows only a token's key id and finds the row by `ix_api_keys_key_id`.
    PrimaryKeyConstraint("tenant_id", "key_id"),
    Index(None, "key_id"),
    Index(None, "tenant_id", "principal_id"),
)


# Keys the server signs with (pagination cursors): in the database, so every API process on it
# signs and checks alike. Written once by migration 0012 from a CSPRNG; never shown.
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("secret", LargeBinary, nullable=False),
    created_at(),
    CheckConstraint("octet_length(secret) >= 32", name="secret_length"),
)
