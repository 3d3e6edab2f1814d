"""The `embed` and `search` commands, as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text
from tests.conftest import Cli
from tests.integration.data_plane.data_plane_support import add_tenant
from tests.integration.search.search_support import SENTENCES_FILE, sentences, write_corpus

REFERENCE = SENTENCES_FILE.with_name("reference_embeddings.npy")


def test_embed_reproduces_the_reference_vectors(cli: Cli) -> None:
    raw: list[str] = json.loads(SENTENCES_FILE.read_text(encoding="utf-8"))
    # The fixture's sentences hold no newlines; one per line, plus a blank line that is skipped.
    assert all("\n" not in sentence for sentence in raw)
    result = cli("embed", input_text="\n".join(raw[:100]) + "\n\n")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == raw[:100]
    vectors = np.array([r["vector"] for r in records], dtype=np.float32)
    reference = np.load(REFERENCE)[:100]
    assert float(np.min(np.sum(vectors * reference, axis=1))) >= 0.999
    assert "skipped 1 empty line" in result.stderr


def test_embed_says_when_a_line_is_truncated(cli: Cli) -> None:
    result = cli("embed", input_text="word " * 400 + "\n")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["truncated"] is True
    assert "truncated to the model's 256" in result.stderr


def test_search_from_the_command_line(cli: Cli, database_url: str, tmp_path: Path) -> None:
    corpus = sentences()[:20]
    folder = write_corpus(tmp_path / "corpus", corpus)[0].parent
    engine = create_engine(database_url)
    add_tenant(engine, "acme")
    assert cli("--json", "ingest", str(folder), "--tenant", "acme").exit_code == 0
    result = cli("--json", "search", corpus[4], "--tenant", "acme", "-k", "3")
    assert result.exit_code == 0, result.stderr
    hits = json.loads(result.stdout)
    assert [set(hit) >= {"atom_id", "score", "text", "source", "modality"} for hit in hits] == [
        True
    ] * 3
    assert hits[0]["text"].strip() == corpus[4]
    assert hits[0]["source"].endswith("part-000.txt")
    assert hits[0]["modality"] == "text"

    # Backfill after the vectors are lost: search works again.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM atom_embeddings"))
    engine.dispose()
    assert json.loads(cli("--json", "search", corpus[4], "--tenant", "acme").stdout) == []
    backfilled = cli("--json", "embed", "--backfill")
    assert backfilled.exit_code == 0, backfilled.stderr
    report = json.loads(backfilled.stdout)
    assert report["embedded"]["minilm-l6-v2"] == 20
    assert report["entries"] == 20
    again = json.loads(cli("--json", "search", corpus[4], "--tenant", "acme", "-k", "1").stdout)
    assert again[0]["atom_id"] == hits[0]["atom_id"]


def test_bad_input_gets_one_clear_line(cli: Cli) -> None:
    cases = {
        ("search", "", "--tenant", "acme"): "the query is empty",
        ("search", "hello", "--tenant", "nobody"): "unknown tenant 'nobody'",
        ("search", "hello", "--tenant", "acme", "-k", "0"): "-k must be between 1 and 100",
        ("search", "hello", "--tenant", "acme", "-k", "101"): "-k must be between 1 and 100",
        ("embed", "--space", "nope"): "unknown embedding space 'nope'",
        ("embed", "--space", "image-features-v1"): "`embed` reads text lines",
        ("embed", "--backfill", "--space", "nope"): "unknown embedding space 'nope'",
    }
    for args, message in cases.items():
        result = cli(*args, input_text="")
        assert result.exit_code == 1, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
