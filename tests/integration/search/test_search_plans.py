"""A semantic search's statement is prepared once per pooled connection and then runs on one
generic plan (docs/search.md, "How a search runs"): the plan is kept across tenants, filters'
values and query vectors, and stays correct for each of them, under row-level security too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from tests.integration.data_plane.data_plane_support import add_tenant, ingest
from tests.integration.search.search_support import sentences, texts_found, write_corpus

from hartonomous.config import Settings
from hartonomous.db.api_role import api_role_url, provision_api_role
from hartonomous.db.isolation import scope_to_bound_tenant
from hartonomous.db.tenant_context import tenant_bound
from hartonomous.search.query import Filters
from hartonomous.search.service import Query, SearchResult, search
from hartonomous.security.tenants import UnknownTenantError

ACME_ONLY = "Acme's quarterly forecast predicts strong growth in anvil sales."
GLOBEX_ONLY = "Globex will relocate its headquarters to a volcano island."
# PostgreSQL plans a prepared statement's first five executions with their values, psycopg
# prepares a statement on its fifth: past both, every search runs on the kept plan.
WARM = 12


def _semantic(
    engine: Engine, tenant: str, query: str, filters: Filters | None = None
) -> SearchResult:
    return search(engine, tenant, Query(text=query), 5, mode="semantic", filters=filters)


def _search_plans(engine: Engine) -> tuple[int, int]:
    """(generic, custom) plans made for the vector search statement on the engine's one
    connection (pool of one). Read outside a transaction, as a search runs: psycopg drops a
    connection's prepared statements when it rolls a transaction back."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        row = connection.execute(
            text(
                "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
                "FROM pg_prepared_statements WHERE statement LIKE 'WITH tenant AS MATERIALIZED%'"
            )
        ).one()
    return int(row[0]), int(row[1])


def _hits(result: SearchResult) -> list[tuple[str, float | None]]:
    return [(hit.atom_id, hit.score) for hit in result.hits]


@pytest.fixture
def two_tenants(engine: Engine, tmp_path: Path) -> tuple[list[str], list[str]]:
    """acme and globex, 30 sentences each plus one of their own; their texts."""
    corpus = sentences()
    acme_texts, globex_texts = [*corpus[:30], ACME_ONLY], [*corpus[30:60], GLOBEX_ONLY]
    ingest(engine, add_tenant(engine, "acme"), *write_corpus(tmp_path / "acme", acme_texts))
    ingest(engine, add_tenant(engine, "globex"), *write_corpus(tmp_path / "globex", globex_texts))
    return acme_texts, globex_texts


@pytest.fixture
def one_connection(database_url: str) -> Iterator[Engine]:
    """The owner's engine over a single pooled connection: every search reuses its plans."""
    single = create_engine(database_url, pool_size=1, max_overflow=0)
    yield single
    single.dispose()


def test_searches_run_on_one_generic_plan_that_answers_each_tenant_as_a_fresh_plan_does(
    engine: Engine, one_connection: Engine, two_tenants: tuple[list[str], list[str]]
) -> None:
    acme_texts, globex_texts = two_tenants
    # Answers of first searches on fresh connections (planned with their values).
    expected = {}
    for tenant, query in (("acme", ACME_ONLY), ("globex", GLOBEX_ONLY), ("acme", GLOBEX_ONLY)):
        fresh = create_engine(engine.url)
        try:
            expected[tenant, query] = _hits(_semantic(fresh, tenant, query))
        finally:
            fresh.dispose()
    # One connection, tenants and query vectors alternating: the plan is made once and kept.
    for turn in range(WARM):
        tenant, texts = (("acme", acme_texts), ("globex", globex_texts))[turn % 2]
        _semantic(one_connection, tenant, texts[turn])
    generic, custom = _search_plans(one_connection)
    assert custom <= 5
    assert generic >= WARM - 5 - 5
    for (tenant, query), hits in expected.items():
        assert _hits(_semantic(one_connection, tenant, query)) == hits
    assert _search_plans(one_connection)[0] == generic + len(expected)
    # Another tenant's sentence is no result of the kept plan: acme sees none of globex's.
    assert GLOBEX_ONLY not in texts_found(_semantic(one_connection, "acme", GLOBEX_ONLY))


def test_a_kept_plan_applies_each_searchs_filter_values(
    one_connection: Engine, two_tenants: tuple[list[str], list[str]]
) -> None:
    acme_texts, _ = two_tenants
    for turn in range(WARM):
        _semantic(one_connection, "acme", acme_texts[turn], Filters(source_type="file"))
    assert _search_plans(one_connection)[0] > 0
    # The same statement with another value: no acme entry is a sample, so nothing is found.
    assert _semantic(one_connection, "acme", ACME_ONLY, Filters(source_type="sample")).hits == []
    kept = _semantic(one_connection, "acme", ACME_ONLY, Filters(source_type="file"))
    assert texts_found(kept)[0] == ACME_ONLY


def test_a_kept_plan_stays_within_the_bound_tenant_under_row_level_security(
    engine: Engine,
    database_url: str,
    data_dir: Path,
    two_tenants: tuple[list[str], list[str]],
) -> None:
    """As the API runs it: the API role, each search bound to its tenant, one connection."""
    acme_texts, globex_texts = two_tenants
    settings = Settings(data_dir=data_dir)
    provision_api_role(engine, settings)
    api_engine = scope_to_bound_tenant(
        create_engine(api_role_url(settings, database_url), pool_size=1, max_overflow=0)
    )
    try:
        for turn in range(WARM):
            tenant, texts = (("acme", acme_texts), ("globex", globex_texts))[turn % 2]
            with tenant_bound(tenant):
                assert texts_found(_semantic(api_engine, tenant, texts[turn]))[0] == texts[turn]
        with tenant_bound("acme"):
            assert _search_plans(api_engine)[0] > 0
            acme_found = texts_found(_semantic(api_engine, "acme", GLOBEX_ONLY))
        with tenant_bound("globex"):
            globex_found = texts_found(_semantic(api_engine, "globex", GLOBEX_ONLY))
        assert GLOBEX_ONLY not in acme_found
        assert set(acme_found) <= set(acme_texts)
        assert globex_found[0] == GLOBEX_ONLY
        assert set(globex_found) <= set(globex_texts)
        # Bound to globex, the kept plan does not even see acme's tenant row.
        with tenant_bound("globex"), pytest.raises(UnknownTenantError):
            _semantic(api_engine, "acme", ACME_ONLY)
    finally:
        api_engine.dispose()
