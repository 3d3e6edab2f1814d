"""Tenant isolation and the public-corpus rule."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from tests.integration.data_plane.data_plane_support import add_tenant, ingest
from tests.integration.search.search_support import (
    find,
    give_plan,
    sentences,
    texts_found,
    write_corpus,
)

from hartonomous.atoms.holdings import release_holding
from hartonomous.db.tables import holdings
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.search.query import Filters
from hartonomous.search.service import SEARCH_MODES, Query, SearchError, SearchMode, search
from hartonomous.security.tenants import TenantDisabledError, UnknownTenantError, set_tenant_state

ACME_ONLY = "Acme's quarterly forecast predicts strong growth in anvil sales."
GLOBEX_ONLY = "Globex will relocate its headquarters to a volcano island."


def _atoms(result: object) -> set[str]:
    return {hit.atom_id for hit in result.hits}  # type: ignore[attr-defined]


def test_a_tenant_never_sees_another_tenants_atoms(engine: Engine, tmp_path: Path) -> None:
    acme, globex = add_tenant(engine, "acme"), add_tenant(engine, "globex")
    corpus = sentences()[:60]
    ingest(engine, acme, *write_corpus(tmp_path / "acme", [*corpus[:30], ACME_ONLY]))
    ingest(engine, globex, *write_corpus(tmp_path / "globex", [*corpus[30:], GLOBEX_ONLY]))
    with engine.connect() as connection:
        acme_atoms = {
            bytes(a).hex()
            for (a,) in connection.execute(
                text("SELECT atom_id FROM search_entries WHERE tenant_id = 'acme'")
            )
        }
    # Globex asks for acme's own words, with k as large as allowed: never one of acme's atoms.
    for query in (ACME_ONLY, *corpus[:30:5]):
        found = _atoms(find(engine, globex, query, k=100))
        assert found, "globex has its own content to return"
        assert not found & acme_atoms
    assert texts_found(find(engine, acme, ACME_ONLY, k=1)) == [ACME_ONLY]


def test_releasing_a_holding_removes_it_from_search(engine: Engine, tmp_path: Path) -> None:
    acme = add_tenant(engine, "acme")
    ingest(engine, acme, *write_corpus(tmp_path / "acme", [ACME_ONLY, GLOBEX_ONLY]))
    assert texts_found(find(engine, acme, ACME_ONLY, k=1)) == [ACME_ONLY]
    with engine.connect() as connection:
        holding_id: uuid.UUID = connection.execute(
            select(holdings.c.holding_id).where(holdings.c.tenant_id == acme)
        ).scalar_one()
    release_holding(engine, acme, holding_id)
    assert find(engine, acme, ACME_ONLY, k=10).hits == []


def _publish(engine: Engine, folder: Path) -> None:
    publisher = add_tenant(engine, "publisher")
    request = IngestRequest(tenant_id=publisher, visibility="public")
    ingest_paths(engine, request, write_corpus(folder, [GLOBEX_ONLY]))


def test_public_corpus_needs_a_plan_that_allows_it(engine: Engine, tmp_path: Path) -> None:
    _publish(engine, tmp_path / "public")
    reader, closed = add_tenant(engine, "reader"), add_tenant(engine, "closed")
    ingest(engine, reader, *write_corpus(tmp_path / "reader", [ACME_ONLY]))
    ingest(engine, closed, *write_corpus(tmp_path / "closed", [ACME_ONLY]))

    # No plan at all: the public corpus stays closed to everyone.
    assert texts_found(find(engine, reader, GLOBEX_ONLY, k=10)) == [ACME_ONLY]

    # A global plan that allows it opens it; a tenant plan that forbids it closes it again.
    give_plan(engine, None, can_query_public_corpus=True)
    give_plan(engine, closed, can_query_public_corpus=False)
    result = find(engine, reader, GLOBEX_ONLY, k=10)
    assert list(zip(texts_found(result), [h.visibility for h in result.hits], strict=True)) == [
        (GLOBEX_ONLY, "public"),
        (ACME_ONLY, "private"),
    ]
    assert texts_found(find(engine, closed, GLOBEX_ONLY, k=10)) == [ACME_ONLY]


def test_filters_and_bad_requests(engine: Engine, tmp_path: Path) -> None:
    acme = add_tenant(engine, "acme")
    ingest(engine, acme, *write_corpus(tmp_path / "acme", [ACME_ONLY]))
    assert find(engine, acme, ACME_ONLY, filters=Filters(source_modality="text")).hits
    assert not find(engine, acme, ACME_ONLY, filters=Filters(source_modality="document")).hits
    assert not find(engine, acme, ACME_ONLY, filters=Filters(source_type="sample")).hits
    with pytest.raises(UnknownTenantError, match="unknown tenant 'nobody'"):
        find(engine, "nobody", ACME_ONLY)
    with pytest.raises(SearchError, match="empty"):
        find(engine, acme, "   ")
    with pytest.raises(SearchError, match="between 1 and 100"):
        find(engine, acme, ACME_ONLY, k=101)


@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_unknown_and_disabled_tenants_are_refused_in_every_mode(
    engine: Engine, tmp_path: Path, mode: SearchMode
) -> None:
    acme = add_tenant(engine, "acme")
    ingest(engine, acme, *write_corpus(tmp_path / "acme", [ACME_ONLY]))
    with pytest.raises(UnknownTenantError, match="unknown tenant 'nobody'"):
        search(engine, "nobody", Query(text=ACME_ONLY), mode=mode)
    with engine.begin() as connection:
        set_tenant_state(connection, acme, "disabled")
    with pytest.raises(TenantDisabledError, match=f"tenant '{acme}' is disabled"):
        search(engine, acme, Query(text=ACME_ONLY), mode=mode)
    with engine.begin() as connection:
        set_tenant_state(connection, acme, "active")
    assert texts_found(search(engine, acme, Query(text=ACME_ONLY), mode=mode)) == [ACME_ONLY]
