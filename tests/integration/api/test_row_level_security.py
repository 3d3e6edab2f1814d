"""Isolation in depth: row-level security binds the API role to the authenticated tenant.

The API's engine connects as the API role (not an owner, not a superuser); every transaction
on it starts with the bound tenant (docs/security.md, "Isolation"). These tests take the
tenant condition out of real queries and show the other tenant's rows stay out of reach.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import (
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from tests.integration.data_plane.data_plane_support import add_tenant, ingest
from tests.integration.search.search_support import find, give_plan, texts_found, write_corpus

from hartonomous.api.auth import Caller, authenticated, platform_of
from hartonomous.atoms.holdings import HoldingNotFoundError, list_holdings, release_holding
from hartonomous.atoms.read import AtomNotFoundError, require_visible
from hartonomous.config import Settings
from hartonomous.db.api_role import API_PRIVILEGES, ApiRoleError, provision_api_role
from hartonomous.db.isolation import scope_to_bound_tenant
from hartonomous.db.tables import holdings, ingestion_jobs, metadata
from hartonomous.db.tenant_context import tenant_bound
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.security.tenants import UnknownTenantError

from .conftest import IssueKey, bearer

ACME_TEXT = "Acme's quarterly forecast predicts strong growth in anvil sales."
GLOBEX_TEXT = "Globex will relocate its headquarters to a volcano island."
TENANT_TABLES = sorted(name for name, table in metadata.tables.items() if "tenant_id" in table.c)


@pytest.fixture
def two_tenants(engine: Engine, api_engine: Engine, tmp_path: Path) -> None:
    """acme ingests through the API role (its tenant bound), globex through the owner."""
    add_tenant(engine, "acme")
    add_tenant(engine, "globex")
    with tenant_bound("acme"):
        outcome = ingest_paths(
            api_engine, IngestRequest(tenant_id="acme"), write_corpus(tmp_path / "a", [ACME_TEXT])
        )
    assert outcome.status == "completed"
    ingest(engine, "globex", *write_corpus(tmp_path / "g", [GLOBEX_TEXT]))


def _count(engine: Engine, table: str, where: str = "TRUE") -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(text(f'SELECT count(*) FROM "{table}" WHERE {where}')).scalar_one()
        )


def test_every_table_with_a_tenant_id_has_row_level_security_and_a_policy(engine: Engine) -> None:
    with engine.connect() as connection:
        in_database = set(
            connection.execute(
                text(
                    "SELECT table_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND column_name = 'tenant_id'"
                )
            ).scalars()
        )
        secured = {
            row.relname: (row.relrowsecurity, row.relforcerowsecurity)
            for row in connection.execute(
                text(
                    "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'"
                )
            )
        }
        policies = {
            (row.tablename, row.policyname): row.cmd
            for row in connection.execute(
                text("SELECT tablename, policyname, cmd FROM pg_policies")
            )
        }
    assert in_database == set(TENANT_TABLES)
    assert len(TENANT_TABLES) >= 13
    for table in TENANT_TABLES:
        # Enabled, not forced: the owner (every maintenance path) bypasses it on purpose.
        assert secured[table] == (True, False), table
        assert policies[(table, "tenant_isolation")] == "ALL", table


def test_every_table_is_listed_with_the_api_roles_privileges(engine: Engine) -> None:
    with engine.connect() as connection:
        in_database = set(
            connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            ).scalars()
        )
    assert set(API_PRIVILEGES) == set(metadata.tables) | {"alembic_version"} == in_database


def test_the_api_roles_grants_are_exactly_the_listed_ones(
    engine: Engine, api_engine: Engine
) -> None:
    with api_engine.connect() as connection:
        for table, privileges in API_PRIVILEGES.items():
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"):
                held = connection.execute(
                    text("SELECT has_table_privilege(current_user, :t, :p)"),
                    {"t": f'"{table}"', "p": privilege},
                ).scalar_one()
                assert held == (privilege in privileges), (table, privilege)


def test_a_query_without_its_tenant_condition_reads_only_the_bound_tenants_rows(
    engine: Engine, api_engine: Engine, two_tenants: None
) -> None:
    # The owner (maintenance path) sees both tenants: the data the API role must not reach exists.
    assert _count(engine, "holdings", "tenant_id = 'globex'") > 0
    assert _count(engine, "search_entries", "tenant_id = 'globex'") > 0
    with tenant_bound("acme"), api_engine.connect() as connection:
        # The holdings listing's own statement (atoms/holdings.py) minus its WHERE tenant_id.
        rows = connection.execute(select(holdings).order_by(holdings.c.created_at.desc())).all()
        assert rows
        assert {row.tenant_id for row in rows} == {"acme"}
        # The listing asked for the other tenant by name: still nothing.
        assert list_holdings(connection, "globex") == []
        assert list_holdings(connection, "acme")
        globex_atom = connection.execute(
            text("SELECT atom_id FROM atoms WHERE canonical_text LIKE 'Globex%'")
        ).scalar_one()
        with pytest.raises(AtomNotFoundError):
            require_visible(connection, "globex", bytes(globex_atom))
        jobs = connection.execute(select(ingestion_jobs.c.tenant_id)).scalars().all()
        assert set(jobs) == {"acme"}
    with tenant_bound("acme"):
        for table in TENANT_TABLES:
            assert _count(api_engine, table, "tenant_id IS DISTINCT FROM 'acme'") == 0, table
        assert _count(api_engine, "search_entries") > 0
        assert _count(api_engine, "tenants") == 1


def test_with_no_tenant_bound_the_api_role_sees_no_tenant_row(
    engine: Engine, api_engine: Engine, two_tenants: None
) -> None:
    give_plan(engine, None, can_query_public_corpus=True)  # a shared (NULL tenant) row too
    assert _count(engine, "holdings") > 0
    assert _count(engine, "billing_rate_plans") > 0
    for table in TENANT_TABLES:
        assert _count(api_engine, table) == 0, table
    with tenant_bound("acme"):
        assert _count(api_engine, "billing_rate_plans") == 1  # shared rows need a tenant too


def test_the_api_role_cannot_change_or_add_another_tenants_rows(
    engine: Engine, api_engine: Engine, two_tenants: None
) -> None:
    with engine.connect() as connection:
        globex_holding: uuid.UUID = connection.execute(
            select(holdings.c.holding_id).where(holdings.c.tenant_id == "globex")
        ).scalar_one()
    before = _count(engine, "holdings", "tenant_id = 'globex' AND source_uri NOT LIKE 'x%'")
    with tenant_bound("acme"):
        with api_engine.begin() as connection:
            changed = connection.execute(
                update(holdings).where(holdings.c.tenant_id == "globex").values(source_uri="x")
            ).rowcount
            deleted = connection.execute(
                delete(holdings).where(holdings.c.holding_id == globex_holding)
            ).rowcount
        assert (changed, deleted) == (0, 0)
        with pytest.raises(HoldingNotFoundError):
            release_holding(api_engine, "globex", globex_holding)
        with (
            pytest.raises(DBAPIError, match="row-level security"),
            api_engine.begin() as connection,
        ):
            connection.execute(insert(ingestion_jobs).values(tenant_id="globex"))
        # Moving an own row to the other tenant is refused too (WITH CHECK).
        with (
            pytest.raises(DBAPIError, match="row-level security"),
            api_engine.begin() as connection,
        ):
            connection.execute(update(holdings).values(tenant_id="globex"))
    assert _count(engine, "holdings", "tenant_id = 'globex' AND source_uri NOT LIKE 'x%'") == before
    assert _count(engine, "ingestion_jobs", "tenant_id = 'globex'") == 1


def test_the_api_role_owns_nothing_and_cannot_become_the_owner(
    engine: Engine, api_engine: Engine, two_tenants: None
) -> None:
    with api_engine.connect() as connection:
        role = connection.execute(
            text(
                "SELECT rolsuper, rolbypassrls, rolcreaterole, rolinherit FROM pg_roles "
                "WHERE rolname = current_user"
            )
        ).one()
        assert tuple(role) == (False, False, False, False)
        owned = connection.execute(
            text(
                "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                "WHERE r.rolname = current_user"
            )
        ).scalar_one()
        assert owned == 0
    owner = engine.url.username
    escapes = [
        f'SET ROLE "{owner}"',
        "ALTER TABLE holdings DISABLE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON holdings",
        "CREATE TABLE escape (tenant_id text)",
        "SELECT * FROM broker_messages",
        "TRUNCATE holdings",
    ]
    for statement in escapes:
        with (
            pytest.raises(DBAPIError, match=r"permission denied|must be owner"),
            api_engine.begin() as connection,
        ):
            connection.execute(text(statement))
    # Turning row security off makes a filtered query fail instead of showing more rows.
    with tenant_bound("acme"), api_engine.begin() as connection:
        connection.execute(text("SET LOCAL row_security = off"))
        with pytest.raises(DBAPIError, match="row-level security"):
            connection.execute(text("SELECT count(*) FROM holdings"))


def test_a_setting_left_on_a_pooled_connection_does_not_outlive_its_transaction(
    api_engine: Engine, two_tenants: None
) -> None:
    # Only our code sets the tenant (no endpoint runs a caller's SQL); even a session-level
    # value left behind is overridden by the next transaction's own setting.
    with api_engine.connect() as connection:
        connection.execute(text("SELECT set_config('hartonomous.tenant_id', 'globex', false)"))
        connection.commit()
        assert _count(api_engine, "holdings") == 0
        seen = connection.execute(select(func.count()).select_from(holdings)).scalar_one()
        assert seen == 0
        connection.rollback()
        with tenant_bound("acme"):
            tenants = connection.execute(select(holdings.c.tenant_id).distinct()).scalars().all()
        assert tenants == ["acme"]


def test_a_session_value_left_by_an_autocommit_search_is_cleared_before_reuse(
    api_engine: Engine, two_tenants: None
) -> None:
    # One connection in the pool, so the second checkout gets the first one's session.
    single = scope_to_bound_tenant(create_engine(api_engine.url, pool_size=1, max_overflow=0))
    try:
        with tenant_bound("acme"):
            assert texts_found(find(single, "acme", ACME_TEXT, k=5)) == [ACME_TEXT]
        with single.connect() as connection:
            # The driver connection, before any SQLAlchemy statement: no begin hook ran.
            driver = connection.connection.driver_connection
            assert driver is not None
            seen = driver.execute("SELECT count(*) FROM holdings").fetchone()
        assert seen == (0,)
    finally:
        single.dispose()


def test_a_session_value_is_kept_only_for_its_own_tenant(
    api_engine: Engine, two_tenants: None
) -> None:
    # The same tenant's next search reuses the value without a statement; another tenant's
    # checkout never sees it, not even on the driver connection before any statement.
    single = scope_to_bound_tenant(create_engine(api_engine.url, pool_size=1, max_overflow=0))
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(statement)

    event.listen(single, "before_cursor_execute", record)
    try:
        with tenant_bound("acme"):
            assert texts_found(find(single, "acme", ACME_TEXT, k=5)) == [ACME_TEXT]
            settings_sent = sum("set_config(%s, %s, %s)" in s for s in statements)
            assert texts_found(find(single, "acme", ACME_TEXT, k=5)) == [ACME_TEXT]
            assert sum("set_config(%s, %s, %s)" in s for s in statements) == settings_sent
        with tenant_bound("globex"), single.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            seen = driver.execute("SELECT DISTINCT tenant_id FROM holdings").fetchall()
            assert seen == []
            tenants = connection.execute(select(holdings.c.tenant_id).distinct()).scalars().all()
            assert tenants == ["globex"]
    finally:
        single.dispose()


def test_search_runs_as_the_api_role_and_stays_in_the_bound_tenant(
    engine: Engine, api_engine: Engine, two_tenants: None, tmp_path: Path
) -> None:
    with tenant_bound("acme"):
        assert texts_found(find(api_engine, "acme", ACME_TEXT, k=5)) == [ACME_TEXT]
        with pytest.raises(UnknownTenantError):
            find(api_engine, "globex", GLOBEX_TEXT)
    # The public corpus stays readable to a tenant whose plan opens it (SELECT only).
    add_tenant(engine, "publisher")
    public = IngestRequest(tenant_id="publisher", visibility="public")
    ingest_paths(engine, public, write_corpus(tmp_path / "p", ["Lighthouses guide ships home."]))
    give_plan(engine, None, can_query_public_corpus=True)
    with tenant_bound("acme"):
        found = find(api_engine, "acme", "Lighthouses guide ships home.", k=5)
        assert texts_found(found)[0] == "Lighthouses guide ships home."
        assert found.hits[0].visibility == "public"
        with api_engine.begin() as connection:
            changed = connection.execute(
                update(holdings).where(holdings.c.tenant_id == "publisher").values(source_uri="x")
            ).rowcount
        assert changed == 0


def _with_probes(client: TestClient) -> TestClient:
    app = client.app
    assert isinstance(app, FastAPI)

    def seen(request: Request) -> dict[str, object]:
        engine = platform_of(request).engine
        with engine.connect() as connection:
            setting = connection.execute(
                text("SELECT current_setting('hartonomous.tenant_id', true)")
            ).scalar_one()
            tenants = connection.execute(text("SELECT tenant_id FROM tenants")).scalars().all()
        return {"setting": setting, "tenants": tenants}

    @app.get("/probe/sync")
    def sync_probe(request: Request, caller: Caller = Depends(authenticated)) -> dict[str, object]:  # noqa: B008
        return seen(request)

    @app.get("/probe/async")
    async def async_probe(
        request: Request,
        caller: Caller = Depends(authenticated),  # noqa: B008
    ) -> dict[str, object]:
        return seen(request)

    @app.get("/probe/anonymous")
    def anonymous_probe(request: Request) -> dict[str, object]:
        return seen(request)

    return client


def test_the_authenticated_tenant_reaches_sync_and_async_endpoints_and_no_further(
    api: TestClient, issue_key: IssueKey
) -> None:
    client = _with_probes(api)
    acme, globex = issue_key(tenant="acme"), issue_key(tenant="globex")
    for _round in range(2):
        for path in ("/probe/sync", "/probe/async"):
            for tenant, token in (("acme", acme), ("globex", globex)):
                answer = client.get(path, headers=bearer(token))
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"setting": tenant, "tenants": [tenant]}
        # A request with no key, after keyed ones, sees no tenant at all.
        assert client.get("/probe/anonymous").json() == {"setting": "", "tenants": []}


def test_provisioning_refuses_an_api_url_role_that_bypasses_row_level_security(
    engine: Engine, database_url: str, data_dir: Path
) -> None:
    owner_as_api = Settings(data_dir=data_dir, database={"api_url": database_url})
    with pytest.raises(ApiRoleError, match=r"database owner|superuser"):
        provision_api_role(engine, owner_as_api)
    missing = database_url.replace("://postgres@", "://nobody_here@", 1)
    with pytest.raises(ApiRoleError, match="does not exist"):
        provision_api_role(engine, Settings(data_dir=data_dir, database={"api_url": missing}))
    # Operator-made roles that the policies would not bind: each refused, with the reason.
    cases = {
        "BYPASSRLS": ("LOGIN BYPASSRLS", ""),
        "member of the owner role": ("LOGIN", 'GRANT "postgres" TO {role}'),
    }
    for reason, (attributes, extra) in cases.items():
        role = f"api_{uuid.uuid4().hex[:8]}"
        with engine.begin() as connection:
            connection.execute(text(f"CREATE ROLE {role} {attributes}"))
            if extra:
                connection.execute(text(extra.format(role=role)))
        try:
            url = database_url.replace("://postgres@", f"://{role}@", 1)
            settings = Settings(data_dir=data_dir, database={"api_url": url})
            with pytest.raises(ApiRoleError, match=reason):
                provision_api_role(engine, settings)
        finally:
            with engine.begin() as connection:
                connection.execute(text(f"DROP ROLE {role}"))
