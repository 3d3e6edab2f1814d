"""Lexical search ranks the matches, then keeps the first k the tenant sees (search/lexical.py):
the answer is the tenant's best k by ts_rank_cd, whether the tenant sees most of the matches or
few of them among better-ranked atoms of another tenant (then found by ranking all matches,
past the first bounded ranking)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from tests.integration.data_plane.data_plane_support import add_tenant, ingest

from hartonomous.search import lexical
from hartonomous.search.service import Query, search


def _paragraphs(prefix: str, count: int, gap: int) -> str:
    """``count`` paragraphs holding "beacon" and "signal" ``gap`` + n filler words apart."""
    return "\n\n".join(
        f"{prefix} {n}: beacon " + "quietly " * (gap + n) + "signal ends here" for n in range(count)
    )


def _reference(engine: Engine, tenant: str, query: str, k: int) -> list[bytes]:
    """The tenant's visible matches ranked by ts_rank_cd in one plain statement."""
    with engine.connect() as connection:
        return [
            bytes(row[0])
            for row in connection.execute(
                text(
                    "SELECT a.atom_id FROM atoms a, plainto_tsquery('english', :q) q "
                    "WHERE a.text_search @@ q AND EXISTS (SELECT 1 FROM search_entries s "
                    "WHERE s.atom_id = a.atom_id AND s.tenant_id = :t) "
                    "ORDER BY ts_rank_cd(a.text_search, q, 1) DESC, a.atom_id LIMIT :k"
                ),
                {"q": query, "t": tenant, "k": k},
            )
        ]


def test_the_tenants_best_k_whether_it_sees_most_or_few_of_the_matches(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme, globex = add_tenant(engine, "acme"), add_tenant(engine, "globex")
    # globex's matches rank above acme's (the words closer), and outnumber them.
    (tmp_path / "far.txt").write_text(_paragraphs("Far", 6, 4))
    (tmp_path / "near.txt").write_text(_paragraphs("Near", 40, 0))
    ingest(engine, acme, tmp_path / "far.txt")
    ingest(engine, globex, tmp_path / "near.txt")
    query = "beacon signal"
    # With the default bound every match here is ranked at once; with 2 candidates per
    # result, acme's matches are all outside the first ranking and found by the second.
    for per_result in (lexical.CANDIDATES_PER_RESULT, 2):
        monkeypatch.setattr(lexical, "CANDIDATES_PER_RESULT", per_result)
        for tenant, k in ((acme, 3), (acme, 10), (globex, 5), (globex, 50)):
            hits = search(engine, tenant, Query(text=query), k, mode="lexical").hits
            expected = _reference(engine, tenant, query, k)
            assert [bytes.fromhex(hit.atom_id) for hit in hits] == expected, (tenant, k)
            assert len(hits) == len(expected) > 0
    acme_hits = search(engine, acme, Query(text=query), 10, mode="lexical").hits
    assert all("Far" in (hit.text or "") for hit in acme_hits)  # none of globex's
