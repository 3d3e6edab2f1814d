"""Migrations are the only source of schema: up, down, up again, and they equal the metadata."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from hartonomous.db import current_revision, downgrade, head_revision, upgrade
from hartonomous.db.tables import metadata


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_up_down_up(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert set(metadata.tables) <= table_names(empty_database_url)

        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert table_names(empty_database_url) == {"alembic_version"}
        with engine.connect() as connection:
            extension = connection.execute(
                text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
            ).scalar()
        assert extension is None

        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert set(metadata.tables) <= table_names(empty_database_url)
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine)
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_step_by_step_downgrade_and_upgrade(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        upgrade(engine, "0001")
        assert "tenants" in table_names(empty_database_url)
        assert "billing_rate_plans" not in table_names(empty_database_url)
        upgrade(engine, "0002")
        downgrade(engine, "-1")
        assert current_revision(engine) == "0001"
        assert "billing_rate_plans" not in table_names(empty_database_url)
    finally:
        engine.dispose()


def test_migrations_at_head_equal_the_table_metadata(database_url: str) -> None:
    """The smoke test trusts the metadata; this keeps metadata and migrations identical."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_tenant_ids_differing_only_in_case_stop_the_upgrade_naming_them(
    empty_database_url: str,
) -> None:
    engine = create_engine(empty_database_url)
    try:
        upgrade(engine, "0016")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO tenants (tenant_id, display_name) "
                    "VALUES ('acme', 'a'), ('ACME', 'b'), ('beta', 'c')"
                )
            )
        with pytest.raises(RuntimeError, match=r"differ only in case: ACME, acme \(") as refused:
            upgrade(engine, "0023")
        assert "beta" not in str(refused.value)
        assert current_revision(engine) == "0016"
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM tenants WHERE tenant_id = 'ACME'"))
        upgrade(engine, "0023")
        with engine.begin() as connection, pytest.raises(IntegrityError, match="ignoring_case"):
            connection.execute(
                text("INSERT INTO tenants (tenant_id, display_name) VALUES ('Acme', 'x')")
            )
    finally:
        engine.dispose()
