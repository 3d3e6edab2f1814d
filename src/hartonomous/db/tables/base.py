"""The single SQLAlchemy MetaData that migrations build and the smoke test checks against."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, func, text

# Deterministic constraint names, so migrations can refer to them and smoke can report them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

TENANT_ID_LENGTH = 64
TENANT_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
NEW_UUID = text("gen_random_uuid()")


def created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def updated_at() -> Column[object]:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())
