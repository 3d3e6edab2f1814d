"""Retrieval over a real corpus: 200 sentences, each found again from a fragment of itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, text
from tests.integration.data_plane.data_plane_support import add_tenant, ingest
from tests.integration.search.search_support import (
    find,
    sentences,
    texts_found,
    write_corpus,
)

from hartonomous.embed.indexing import Embedders
from hartonomous.search.planner import PlannerSettings
from hartonomous.search.service import Query, search


def _fragment(sentence: str) -> str:
    """The first ~60% of the sentence's words (at least five): a fragment, not the sentence."""
    words = sentence.split()
    return " ".join(words[: max(5, (len(words) * 3) // 5)])


def test_every_sentence_is_found_from_a_fragment(engine: Engine, tmp_path: Path) -> None:
    corpus = sentences()
    tenant = add_tenant(engine, "acme")
    outcome = ingest(engine, tenant, *write_corpus(tmp_path / "corpus", corpus))
    assert outcome.status == "completed"
    assert sum(file.embedded for file in outcome.files) == len(corpus)

    ranks = []
    for sentence in corpus:
        found = texts_found(find(engine, tenant, _fragment(sentence), k=10))
        ranks.append(found.index(sentence) + 1 if sentence in found else None)
    top1 = sum(1 for rank in ranks if rank == 1) / len(corpus)
    top10 = sum(1 for rank in ranks if rank is not None) / len(corpus)
    assert top1 >= 0.9, f"top-1 {top1:.3f}"
    assert top10 >= 0.98, f"top-10 {top10:.3f}"


def test_the_iterative_index_scan_agrees_with_the_exact_scan(
    engine: Engine, tmp_path: Path
) -> None:
    corpus = sentences()[:120]
    tenant = add_tenant(engine, "acme")
    ingest(engine, tenant, *write_corpus(tmp_path / "corpus", corpus))
    # Forced through the index (no exact scan allowed up front) and exact: same answers.
    index_only = PlannerSettings(exact_limit=0)
    for sentence in corpus[::10]:
        query = Query(text=_fragment(sentence))
        via_index = search(engine, tenant, query, 5, mode="semantic", settings=index_only)
        exact = search(engine, tenant, query, 5, mode="semantic")
        assert via_index.method == "hnsw"
        assert exact.method == "exact"
        assert [h.atom_id for h in via_index.hits] == [h.atom_id for h in exact.hits]


def test_reingesting_embeds_nothing_new(engine: Engine, tmp_path: Path) -> None:
    corpus = sentences()[:40]
    tenant = add_tenant(engine, "acme")
    paths = write_corpus(tmp_path / "corpus", corpus)
    first = ingest(engine, tenant, *paths)
    other = add_tenant(engine, "globex")
    second = ingest(engine, other, *paths)
    assert sum(f.embedded for f in first.files) == 40
    # The same paragraphs for another tenant: stored once, embedded once, but searchable by both.
    assert sum(f.embedded for f in second.files) == 0
    with engine.connect() as connection:
        counts = dict(
            connection.execute(
                text("SELECT tenant_id, count(*) FROM search_entries GROUP BY tenant_id")
            ).all()
        )
    assert counts == {"acme": 40, "globex": 40}
    assert texts_found(find(engine, other, corpus[3], k=1)) == [corpus[3]]


def test_stored_vectors_are_the_models_to_the_bit(engine: Engine, tmp_path: Path) -> None:
    # Vectors travel to PostgreSQL packed in one binary real[] (embed/vector_param.py): each
    # stored vector must be exactly the model's, in the row of its own atom, whatever its
    # place in the batch.
    corpus = sentences()[:30]
    tenant = add_tenant(engine, "acme")
    ingest(engine, tenant, *write_corpus(tmp_path / "corpus", corpus))
    with engine.connect() as connection:
        stored = dict(
            connection.execute(
                text(
                    "SELECT a.canonical_text, e.embedding::text FROM atom_embeddings e "
                    "JOIN atoms a USING (atom_id)"
                )
            ).all()
        )
    assert sorted(value.strip() for value in stored) == sorted(corpus)
    texts = list(stored)
    for canonical, vector in zip(texts, Embedders().embed_texts(texts), strict=True):
        assert isinstance(vector, np.ndarray)
        values = np.array(json.loads(stored[canonical]), dtype=np.float32)
        assert np.array_equal(values, vector), canonical
