"""The `embed` and `search` commands, as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text
from tests.conftest import Cli
from tests.integration.data_plane.data_plane_support import add_tenant
from tests.integration.search.search_support import SENTENCES_FILE, sentences, write_corpus

REFERENCE = SENTENCES_FILE.with_name("reference_embeddings.npy")


def test_embed_reproduces_the_reference_vectors(cli: Cli) -> None:
    raw: list[str] = json.loads(SENTENCES_FILE.read_text(encoding="utf-8"))
    # The fixture's sentences hold no newlines: one per line.
    assert all("\n" not in sentence for sentence in raw)
    result = cli("embed", input_text="\n".join(raw[:100]) + "\n")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == raw[:100]
    vectors = np.array([r["vector"] for r in records], dtype=np.float32)
    reference = np.load(REFERENCE)[:100]
    assert float(np.min(np.sum(vectors * reference, axis=1))) >= 0.999


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


def test_embed_answers_every_line_in_order_with_an_error_for_unembeddable_ones(cli: Cli) -> None:
    # Line 3 holds only a zero-width space: it used to fail the whole run, with its error naming
    # "index 2" because blank lines had been dropped before counting.
    lines = ["first line", "", "\u200b", "fourth line", " \t ", "sixth line"]
    result = cli("embed", input_text="\n".join(lines) + "\n")
    assert result.exit_code == 1, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == lines
    failed = [index for index, r in enumerate(records) if r["vector"] is None]
    assert failed == [1, 2, 4]
    assert all("nothing to embed" in records[i]["error"] for i in failed)
    assert all(len(r["vector"]) == 384 and "error" not in r for r in records if r["vector"])
    alone = json.loads(cli("embed", input_text="fourth line\n").stdout)["vector"]
    assert np.allclose(records[3]["vector"], alone, atol=1e-6)
    assert "3 line(s) not embedded" in result.stderr


def test_embed_reports_a_line_that_is_not_utf8_and_embeds_the_rest(cli: Cli) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "hartonomous", "embed"],
        input=b"good line\ncaf\xe9 latin-1\nanother good line\n",
        capture_output=True,
        env=cli.env,
        cwd=cli.cwd,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    records = [json.loads(line) for line in completed.stdout.decode().splitlines()]
    assert [r["vector"] is None for r in records] == [False, True, False]
    assert records[1]["error"] == "not UTF-8: byte 0xe9 at offset 3"
    assert records[1]["text"] == "caf\ufffd latin-1"


def test_bad_input_gets_one_clear_line(cli: Cli) -> None:
    failures = {
        ("search", "hello", "--tenant", "nobody"): "unknown tenant 'nobody'",
    }
    for args, message in failures.items():
        result = cli(*args, input_text="")
        assert result.exit_code == 1, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "hartonomous tenants create nobody" in result.stderr
    usage = {
        ("search", "", "--tenant", "acme"): "the query is empty",
        ("search", "hello", "--tenant", "acme", "-k", "0"): "k must be between 1 and 100",
        ("search", "hello", "--tenant", "acme", "-k", "101"): "k must be between 1 and 100",
        # A 16,000-word query took PostgreSQL ~1 GB; the limit is named, in every mode.
        ("search", "word " * 16_000, "--tenant", "acme", "--mode", "lexical"): (
            "the query is 80000 characters; at most 4000 are accepted"
        ),
        ("search", "x" * 4001, "--tenant", "acme"): "at most 4000 are accepted",
        # Filters that name nothing used to answer "(no results)" with exit 0.
        ("search", "hello", "--tenant", "acme", "--modality", "nonsense"): (
            "unknown modality 'nonsense' (known: text, document, image, audio, video, model, "
            "binary)"
        ),
        ("search", "hello", "--tenant", "acme", "--modality", "TEXT"): "unknown modality 'TEXT'",
        ("search", "hello", "--tenant", "acme", "--source-type", "nonsense"): (
            "unknown source type 'nonsense' (known: file, upload, sample, inference)"
        ),
        ("search", "hello", "--tenant", "acme", "--source-type", "FILE", "--mode", "lexical"): (
            "unknown source type 'FILE'"
        ),
        ("embed", "--space", "nope"): "unknown embedding space 'nope'",
        ("embed", "--space", "image-features-v1"): "`embed` reads text lines",
        ("embed", "--backfill", "--space", "nope"): "unknown embedding space 'nope'",
    }
    for args, message in usage.items():
        result = cli(*args, input_text="")
        assert result.exit_code == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_embed_refuses_lines_made_only_of_characters_the_model_does_not_know(cli: Cli) -> None:
    # The examples (their vectors had cosine 0.9999998) and runes, beside known text.
    lines = ["\U0001f525", "\U0001f30a\U0001f30a\U0001f30a", "first line", "\u16a0\u16a2\u16a6"]
    result = cli("embed", input_text="\n".join(lines) + "\n")
    assert result.exit_code == 1, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == lines
    assert [r["vector"] is None for r in records] == [True, True, False, True]
    for index in (0, 1, 3):
        assert "characters the model does not know" in records[index]["error"]
    assert len(records[2]["vector"]) == 384
    assert "3 line(s) not embedded" in result.stderr
