"""Hybrid search: verbatim sentences first at any size, min(k, visible) rows under any filter,
and texts the model cannot see (real PostgreSQL, real MiniLM, real files)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from tests.conftest import TEMPLATE_DATABASE, Cli, PostgresCluster
from tests.integration.data_plane.data_plane_support import (
    add_tenant,
    by_name,
    export,
    ingest,
    write_pdf,
)
from tests.integration.search.search_support import sentences, texts_found, write_corpus

from hartonomous.search.planner import PlannerSettings
from hartonomous.search.query import Filters
from hartonomous.search.service import MAX_QUERY_CHARACTERS, Query, SearchError, search

SEED_BANK = "Inventory of seed bank samples"


def _paragraphs(count: int) -> list[str]:
    """Distinct short paragraphs of real English (the test corpus, numbered)."""
    base = sentences()
    return [f"{base[i % len(base)]} Entry {i}." for i in range(count)]


def test_a_stored_sentence_comes_first_however_many_vectors_the_tenant_holds(
    engine: Engine, tmp_path: Path
) -> None:
    # More short paragraphs than the planner's exact limit (lowered to 200 here, so that the
    # index path runs on a tenth of the paragraphs the default 2,000 would need), and a PDF.
    tenant = add_tenant(engine, "acme")
    planner = PlannerSettings(exact_limit=200)
    corpus = _paragraphs(260)
    paths = write_corpus(tmp_path / "corpus", corpus, per_file=65)
    pdf = write_pdf(tmp_path / "seeds.pdf", [SEED_BANK])
    outcome = ingest(engine, tenant, *paths, pdf)
    assert outcome.status == "completed"

    for mode in ("hybrid", "lexical"):
        hits = search(engine, tenant, Query(text=SEED_BANK), 10, mode=mode, settings=planner).hits
        assert hits[0].modality == "document", mode
        assert SEED_BANK in (hits[0].text or "")
        assert hits[0].verbatim
        assert hits[0].signals["lexical"] == 1
        # Another stored sentence, from the text files this time.
        sentence = corpus[173]
        found = search(engine, tenant, Query(text=sentence), 10, mode=mode, settings=planner)
        assert texts_found(found)[0] == sentence, mode
        # The vector part ran on the index, past the exact limit.
        assert found.method == ("hnsw" if mode == "hybrid" else "none"), mode


_SELECTIVITY_FILES = {"one-percent": 1, "ten-percent": 10, "all": 100}


@pytest.fixture(scope="module")
def selectivity_database(
    postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database where tenants see 1 %, 10 % and 100 % of a 1,000-paragraph space, ingested
    (and embedded) once for the module; each test gets a copy (`selectivity_engine`)."""
    name = postgres_cluster.create_database(TEMPLATE_DATABASE)
    engine = create_engine(postgres_cluster.url(name))
    corpus = tmp_path_factory.mktemp("selectivity") / "corpus"
    paths = write_corpus(corpus, _paragraphs(1000), per_file=10)
    for tenant, files in _SELECTIVITY_FILES.items():
        add_tenant(engine, tenant)
        assert ingest(engine, tenant, *paths[:files]).status == "completed"
    engine.dispose()  # a template database must have no connection when it is copied
    yield name
    postgres_cluster.drop_database(name)


@pytest.fixture
def selectivity_engine(
    postgres_cluster: PostgresCluster, selectivity_database: str
) -> Iterator[Engine]:
    """This test's own copy of `selectivity_database` (CREATE DATABASE ... TEMPLATE)."""
    name = postgres_cluster.create_database(selectivity_database)
    engine = create_engine(postgres_cluster.url(name))
    yield engine
    engine.dispose()
    postgres_cluster.drop_database(name)


@pytest.fixture
def selectivity_tenants() -> dict[str, int]:
    """How many paragraphs each tenant of `selectivity_engine` sees."""
    return {tenant: files * 10 for tenant, files in _SELECTIVITY_FILES.items()}


def test_filtered_searches_return_min_k_visible_rows(
    selectivity_engine: Engine, selectivity_tenants: dict[str, int]
) -> None:
    forced = PlannerSettings(exact_limit=0)
    starved = PlannerSettings(exact_limit=0, max_scan_tuples=30)
    for tenant, visible in selectivity_tenants.items():
        for k in (5, 20, 100):
            for settings in (None, forced, starved):
                for mode in ("semantic", "hybrid"):
                    result = search(
                        selectivity_engine,
                        tenant,
                        Query(text="the weather tomorrow and the day after"),
                        k,
                        mode=mode,
                        settings=settings,
                    )
                    assert len(result.hits) == min(k, visible), (tenant, k, settings, mode)
    # The index answers filtered searches itself (iterative scan), not the exact fallback.
    for tenant in ("ten-percent", "all"):
        result = search(
            selectivity_engine,
            tenant,
            Query(text="a quiet morning"),
            20,
            mode="semantic",
            settings=forced,
        )
        assert result.method == "hnsw"


def test_a_search_on_a_new_connection_scans_with_its_own_settings(
    selectivity_engine: Engine, selectivity_tenants: dict[str, int]
) -> None:
    # A semantic search is one statement: the HNSW settings it makes must hold for the index
    # scan of that same statement. On a new connection (iterative scans off, ef_search 40) a
    # scan of the 10 % tenant without them would come back short and be redone exactly.
    forced = PlannerSettings(exact_limit=0)
    for tenant, k in (("ten-percent", 20), ("all", 60)):
        selectivity_engine.dispose()
        result = search(selectivity_engine, tenant, Query(text="a quiet morning"), k,
                        mode="semantic", settings=forced)  # fmt: skip
        assert (result.method, len(result.hits)) == ("hnsw", k), tenant
        with selectivity_engine.connect() as connection:
            made = connection.execute(
                text(
                    "SELECT current_setting('hnsw.iterative_scan'), "
                    "current_setting('hnsw.ef_search')"
                )
            ).one()
        assert tuple(made) == ("relaxed_order", str(max(k, 40))), tenant


def test_filters_that_leave_few_or_no_entries(
    selectivity_engine: Engine, selectivity_tenants: dict[str, int], tmp_path: Path
) -> None:
    pdf = write_pdf(tmp_path / "seeds.pdf", [SEED_BANK])
    assert ingest(selectivity_engine, "all", pdf).status == "completed"
    forced = PlannerSettings(exact_limit=0)
    query = Query(text="storage of plant material")
    documents = search(
        selectivity_engine,
        "all",
        query,
        10,
        filters=Filters(source_modality="document"),
        settings=forced,
    )
    assert [hit.modality for hit in documents.hits] == ["document"]
    future = datetime.now(UTC) + timedelta(days=1)
    later = search(
        selectivity_engine, "all", query, 10, filters=Filters(held_since=future), settings=forced
    )
    assert later.hits == []


def test_texts_the_model_cannot_see(engine: Engine, tmp_path: Path, cli: Cli) -> None:
    tenant = add_tenant(engine, "acme")
    notes = tmp_path / "notes.txt"
    notes.write_text("🌊🌊🌊\n\nᚠᚢᚦ ᚠᚢᚦ\n\nWaves crash on the rocky shore.\n", encoding="utf-8")
    outcome = ingest(engine, tenant, notes)
    (file,) = outcome.files
    assert (file.embedded, file.unknown_only) == (1, 2)

    # Emoji and runes alike: refused as meaning, not matched at 1.0 against each other.
    for query in ("🔥", "ᚦᚦ"):
        with pytest.raises(SearchError, match=r"does not know.*in lexical mode"):
            search(engine, tenant, Query(text=query), 5, mode="semantic")
        hybrid = search(engine, tenant, Query(text=query), 5)
        assert all(hit.score is None or hit.score < 0.9 for hit in hybrid.hits)
        assert "answered by lexical search only" in hybrid.notes[0]
        search(engine, tenant, Query(text=query), 5, mode="lexical")  # answered, not refused
    # Words still find the words.
    assert texts_found(search(engine, tenant, Query(text="waves on the shore"), 1)) == [
        "Waves crash on the rocky shore."
    ]

    refused = cli("search", "🔥", "--tenant", "acme", "--mode", "semantic")
    assert refused.exit_code == 2  # a usage error: the message names the mode that answers it
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "does not know" in refused.stderr
    summary = cli("ingest", str(notes), "--tenant", "acme")
    assert summary.exit_code == 0, summary.stderr


def test_json_says_which_signals_matched(cli: Cli, database_url: str, tmp_path: Path) -> None:
    corpus = sentences()[:30]
    folder = write_corpus(tmp_path / "corpus", corpus)[0].parent
    add_tenant(create_engine(database_url), "acme")
    ingested = cli("ingest", str(folder), "--tenant", "acme")
    assert ingested.exit_code == 0, ingested.stderr
    for mode, signals in (
        ("hybrid", {"semantic", "lexical"}),
        ("semantic", {"semantic"}),
        ("lexical", {"lexical"}),
    ):
        result = cli(
            "--json", "search", "--tenant", "acme", "--mode", mode, "-k", "3", "--", corpus[7]
        )
        assert result.exit_code == 0, result.stderr
        hits = json.loads(result.stdout)
        assert hits[0]["text"].strip() == corpus[7]
        assert set(hits[0]["signals"]) == signals, mode
        assert all(rank == 1 for rank in hits[0]["signals"].values())
        assert hits[0]["verbatim"] is (mode != "semantic")
    for args, message in (
        (("--mode", "fuzzy"), "unknown search mode 'fuzzy'"),
        (("--mode", "lexical", "--like", str(tmp_path / "x.png")), "x.png"),
    ):
        result = cli("search", "hello", "--tenant", "acme", *args)
        assert result.exit_code == 2  # usage errors (README: exit codes)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr


def test_a_first_paragraph_after_a_byte_order_mark_is_found_lexically(
    engine: Engine, tmp_path: Path
) -> None:
    # The example (UTF-8 mark) and a UTF-16 file with its mark.
    tenant = add_tenant(engine, "marks")
    utf8 = tmp_path / "bom.txt"
    utf8.write_bytes(b"\xef\xbb\xbfZebra crossings are painted white.\n\nSecond.\n")
    utf16 = tmp_path / "wide.txt"
    utf16.write_bytes("Quokkas smile at the ferry passengers.\n\nMore.\n".encode("utf-16"))
    only_mark = tmp_path / "only-mark.txt"
    only_mark.write_bytes(b"\xef\xbb\xbf")
    outcome = ingest(engine, tenant, utf8, utf16, only_mark)
    assert outcome.status == "completed"
    # The mark is not text, but the file's bytes (mark included) are still its atoms'.
    for path in (utf8, utf16, only_mark):
        stored = by_name(outcome)[path.name]
        assert stored.atom_id is not None
        assert export(engine, stored.atom_id) == path.read_bytes()

    for sentence in (
        "Zebra crossings are painted white.",
        "Quokkas smile at the ferry passengers.",
    ):
        for mode in ("lexical", "hybrid"):
            hits = search(engine, tenant, Query(text=sentence), 5, mode=mode).hits
            assert hits, (sentence, mode)
            assert (hits[0].text or "").startswith(sentence), (sentence, mode)
            assert hits[0].verbatim, (sentence, mode)


def test_the_longest_accepted_query_runs_and_a_longer_one_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    tenant = add_tenant(engine, "long-queries")
    paths = write_corpus(tmp_path / "corpus", _paragraphs(20), per_file=20)
    assert ingest(engine, tenant, *paths).status == "completed"
    words = " ".join(_paragraphs(400))
    longest = words[:MAX_QUERY_CHARACTERS]
    for mode in ("lexical", "hybrid", "semantic"):
        search(engine, tenant, Query(text=longest), 5, mode=mode)
        with pytest.raises(SearchError, match=f"at most {MAX_QUERY_CHARACTERS} are accepted"):
            search(engine, tenant, Query(text=words[: MAX_QUERY_CHARACTERS + 1]), 5, mode=mode)


def test_a_hyphenated_query_finds_the_words_written_apart(engine: Engine, tmp_path: Path) -> None:
    # The example ("seed-bank" against a stored "seed bank") and another compound.
    tenant = add_tenant(engine, "hyphens")
    notes = tmp_path / "notes.txt"
    notes.write_text(
        f"{SEED_BANK}\n\nThe state of the art anvil.\n\nA well-known recipe for rye bread.\n",
        encoding="utf-8",
    )
    assert ingest(engine, tenant, notes).status == "completed"
    for query, stored in (
        ("seed-bank samples", SEED_BANK),
        ("state-of-the-art anvil", "The state of the art anvil."),
        # Written with the hyphen, found without it and with it.
        ("well known recipe", "A well-known recipe for rye bread."),
        ("well-known recipe", "A well-known recipe for rye bread."),
    ):
        hits = search(engine, tenant, Query(text=query), 5, mode="lexical").hits
        assert [(hit.text or "").strip() for hit in hits] == [stored], query
    # A stored text searched verbatim, hyphen and all, is still verbatim.
    hits = search(engine, tenant, Query(text="A well-known recipe for rye bread."), 5,
                  mode="lexical").hits  # fmt: skip
    assert hits[0].verbatim
