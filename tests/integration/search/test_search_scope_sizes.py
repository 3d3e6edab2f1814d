"""A scope counted above the planner's exact limit is searched for a while without a new count
(search.scope.ScopeSizes), and never returns fewer rows for it (docs/search.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import Engine, text
from tests.integration.data_plane.data_plane_support import add_tenant, ingest
from tests.integration.search.search_support import sentences, write_corpus

from hartonomous.embed.spaces import get_space
from hartonomous.embed.text_model import MiniLMTextEmbedder
from hartonomous.search.planner import Method, PlannerSettings
from hartonomous.search.query import Filters, VectorSearch
from hartonomous.search.scope import OpenedScope, VectorCount, search_in_scope

SPACE = get_space("minilm-l6-v2")
SMALL_LIMIT = PlannerSettings(exact_limit=8)


def _search(engine: Engine, tenant: str, k: int) -> tuple[OpenedScope, VectorSearch]:
    vector = np.asarray(MiniLMTextEmbedder().encode(["rain later today"]).vectors[0])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return search_in_scope(
            connection, tenant, VectorCount(SPACE, Filters(), k, SMALL_LIMIT), vector
        )


def test_a_large_scope_is_counted_once_and_again_when_its_scan_comes_back_short(
    engine: Engine, tmp_path: Path
) -> None:
    tenant = add_tenant(engine, "acme")
    assert ingest(engine, tenant, *write_corpus(tmp_path, sentences()[:20])).status == "completed"

    counted, first = _search(engine, tenant, 5)
    assert counted.visible == SMALL_LIMIT.exact_limit + 1  # counted up to the limit
    assert (first.plan, first.method_used) == (Method.HNSW, Method.HNSW)
    remembered, second = _search(engine, tenant, 5)
    assert remembered.visible is None  # not counted again
    assert [n.atom_id for n in second.neighbours] == [n.atom_id for n in first.neighbours]

    # The scope shrinks to three entries: the index scan comes back short, the exact scan
    # completes it with every visible row, and the next search counts again.
    with engine.begin() as connection:
        connection.execute(
            text(
                "DELETE FROM search_entries WHERE tenant_id = :t AND atom_id NOT IN "
                "(SELECT atom_id FROM search_entries WHERE tenant_id = :t "
                "ORDER BY atom_id LIMIT 3)"
            ),
            {"t": tenant},
        )
    recounted, shrunk = _search(engine, tenant, 5)
    assert recounted.visible == 3  # what the exact scan weighed, counted again
    assert (shrunk.plan, shrunk.method_used, len(shrunk.neighbours)) == (
        Method.EXACT,
        Method.EXACT,
        3,
    )
    again, exact = _search(engine, tenant, 5)
    assert again.visible == 3  # a scope under the limit is counted on every search
    assert [n.atom_id for n in exact.neighbours] == [n.atom_id for n in shrunk.neighbours]
