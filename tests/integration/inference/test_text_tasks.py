"""Each text task end to end through the in-process job worker: submission, claim, task,
completion with its steps, atoms, holdings and AtomicStream (docs/inference.md)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from sqlalchemy import Engine, text

from hartonomous.embed.indexing import shared_text_embedder
from hartonomous.inference.canonical import canonical_request
from hartonomous.inference.tasks import InferenceStatus, InferenceTask
from hartonomous.provenance import SegmentKind
from hartonomous.search.planner import PlannerSettings, ef_search_for
from hartonomous.search.service import Query, search
from hartonomous.services import Platform
from hartonomous.services.inference import Submission, submit

from .conftest import Ingest, finished, stream_of

ANIMALS = {
    "cat.txt": "The cat purred on the warm windowsill and chased a mouse at night.",
    "dog.txt": "The dog barked at the mailman and wagged its tail in the garden.",
    "horse.txt": "The horse galloped across the meadow and ate hay in the stable.",
}
FINANCE = {
    "bonds.txt": "Bond yields rose as the central bank raised interest rates again.",
    "stocks.txt": "Stock prices fell sharply after the quarterly earnings report.",
    "loans.txt": "The bank approved the mortgage loan at a fixed annual rate.",
}


def _rows(engine: Engine, sql: str, **params: object) -> list[object]:
    with engine.connect() as connection:
        return list(connection.execute(text(sql), params).all())


def test_text_embedding_completes_with_vector_units_atoms_and_stream(
    platform: Platform, engine: Engine
) -> None:
    sentence = "Provenance answers where an output came from."
    submitted = submit(
        platform,
        Submission(
            tenant_id="acme",
            task=InferenceTask.TEXT_EMBEDDING,
            input={"text": sentence},
            attributes={"region": "eu"},
        ),
    )
    assert submitted.status is InferenceStatus.PENDING
    view = finished(platform, "acme", submitted.inference_id)

    assert view.status is InferenceStatus.COMPLETED, view.error
    assert view.attempts == 1
    assert view.output is not None
    encoded = shared_text_embedder().encode([sentence])
    expected = encoded.vectors[0]
    assert view.output["dimension"] == len(expected) == 384
    assert np.allclose(np.asarray(view.output["vector"], dtype=np.float32), expected, atol=1e-6)
    assert view.output["token_count"] == encoded.token_counts[0]
    assert view.usage_units == Decimal(encoded.token_counts[0]) / 1000
    assert [step.operation for step in view.steps] == ["embed"]

    # The text is an atom the tenant holds as this inference's input.
    atom_hex = view.input["text"]["atom_id"]
    (holding,) = _rows(
        engine,
        "SELECT holding_id, source_uri, source_type FROM holdings "
        "WHERE tenant_id = 'acme' AND atom_id = decode(:a, 'hex')",
        a=atom_hex,
    )
    assert holding.source_uri == f"inference:{view.inference_id}/input/text"
    assert holding.source_type == "inference"
    (used,) = _rows(
        engine,
        "SELECT role, name, holding_id FROM inference_atoms WHERE inference_id = :i",
        i=view.inference_id,
    )
    assert (used.role, used.name, used.holding_id) == ("input", "text", holding.holding_id)

    stream = stream_of(engine, view)
    assert [s.kind for s in stream.segments] == [
        SegmentKind.Input,
        SegmentKind.Control,
        SegmentKind.Embedding,
        SegmentKind.Telemetry,
        SegmentKind.Output,
    ]
    assert stream.scope == "acme"
    assert stream.model == "minilm-l6-v2"
    assert stream.segments[0].payload == canonical_request(
        "text_embedding", None, {"text": {"atom_id": atom_hex}}
    )
    embedded = np.frombuffer(stream.segments[2].payload, dtype="<f4")
    assert np.allclose(embedded, expected, atol=1e-6)
    assert b'"region":"eu"' in stream.segments[1].payload


def test_semantic_search_finds_the_nearest_of_the_tenants_texts(
    platform: Platform, ingest: Ingest
) -> None:
    atoms = ingest("acme", ANIMALS | FINANCE)
    ingest("globex", {"other.txt": "The cat purred on the warm windowsill all afternoon."})
    submitted = submit(
        platform,
        Submission(
            tenant_id="acme",
            task=InferenceTask.SEMANTIC_SEARCH,
            input={"text": "a kitten sleeping by the window", "k": 3},
        ),
    )
    view = finished(platform, "acme", submitted.inference_id)
    assert view.status is InferenceStatus.COMPLETED, view.error
    assert view.output is not None
    hits = view.output["hits"]
    assert isinstance(hits, list)
    assert len(hits) == 3
    cat_atom = atoms[list(ANIMALS | FINANCE).index("cat.txt")]
    assert hits[0]["atom_id"] == cat_atom
    assert all("globex" not in str(hit) for hit in hits)
    (step,) = view.steps
    assert step.operation == "semantic_search"
    assert step.rows_returned == 3
    assert step.index_used == view.output["method"] == "exact"
    # Every text entry acme may see was weighed (6 files), none of globex's.
    assert step.rows_examined == len(ANIMALS | FINANCE) == 6
    assert step.detail["rows_examined_exact"] is True
    assert view.usage_units is not None
    assert view.usage_units > 0


def test_an_hnsw_search_reports_its_candidate_list_as_a_lower_bound(
    engine: Engine, ingest: Ingest
) -> None:
    ingest("acme", ANIMALS | FINANCE)
    planner = PlannerSettings(exact_limit=0)  # HNSW whatever the count
    result = search(
        engine,
        "acme",
        Query(text="a kitten sleeping by the window"),
        2,
        mode="semantic",
        settings=planner,
    )
    assert result.method == "hnsw"
    assert result.vectors_examined == ef_search_for(2, planner) == planner.ef_search
    assert result.examined_exactly is False


def test_classification_votes_with_labelled_neighbours(
    platform: Platform, engine: Engine, ingest: Ingest
) -> None:
    ingest("acme", ANIMALS, label="animals")
    ingest("acme", FINANCE, label="finance")
    ingest("acme", {"unlabelled.txt": "A puppy and a kitten played with a ball of yarn."})
    submitted = submit(
        platform,
        Submission(
            tenant_id="acme",
            task=InferenceTask.CLASSIFICATION,
            input={"text": "The kitten chased the puppy around the barn.", "k": 3},
        ),
    )
    view = finished(platform, "acme", submitted.inference_id)
    assert view.status is InferenceStatus.COMPLETED, view.error
    assert view.output is not None
    assert view.output["label"] == "animals"
    assert view.confidence is not None
    assert 0.5 < view.confidence <= 1.0
    assert view.output["confidence"] == view.confidence
    neighbours = view.output["neighbours"]
    assert isinstance(neighbours, list)
    assert len(neighbours) == 3
    assert {n["label"] for n in neighbours} <= {"animals", "finance"}
    _, search = view.steps
    assert search.rows_examined == 6  # every labelled entry, none unlabelled
    assert search.rows_returned == 3
    used = _rows(
        engine,
        "SELECT name, encode(atom_id, 'hex') AS atom FROM inference_atoms "
        "WHERE inference_id = :i AND role = 'input' ORDER BY ordinal",
        i=view.inference_id,
    )
    assert [u.name for u in used] == ["text", "neighbour/1", "neighbour/2", "neighbour/3"]
    assert [u.atom for u in used[1:]] == [n["atom_id"] for n in neighbours]


def test_classification_of_a_finance_text_and_the_share_of_votes(
    platform: Platform, ingest: Ingest
) -> None:
    ingest("acme", ANIMALS, label="animals")
    ingest("acme", FINANCE, label="finance")
    submitted = submit(
        platform,
        Submission(
            tenant_id="acme",
            task=InferenceTask.CLASSIFICATION,
            input={"text": "Interest rates and bond markets moved after the bank's decision."},
        ),
    )
    view = finished(platform, "acme", submitted.inference_id)
    assert view.output is not None, view.error
    assert view.output["label"] == "finance"
    votes = view.output["votes"]
    assert isinstance(votes, dict)
    assert abs(sum(float(v) for v in votes.values()) - 1.0) < 1e-9
    assert view.input["k"] == 5  # the default, stored
