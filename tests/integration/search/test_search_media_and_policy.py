"""Image and audio feature spaces at ingestion, search by example, and near-duplicate links."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image
from sqlalchemy import Engine, func, select, text
from tests.integration.data_plane.data_plane_support import add_tenant, ingest
from tests.integration.search.search_support import find

from hartonomous.db.tables import atom_similarities, ingestion_jobs
from hartonomous.embed.indexing import Embedders
from hartonomous.ingest.examples import read_example
from hartonomous.ingest.indexing import HoldingIndexer
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.search.service import Query, SearchError, search
from hartonomous.search.similar import UnknownPolicyError


def _image(path: Path, seed: int, side: int = 120) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    Image.fromarray(base).resize((side, side), Image.Resampling.BICUBIC).save(path)
    return path


def _tone(path: Path, hertz: float, rate: int = 16000) -> Path:
    time = np.arange(rate) / rate
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * hertz * time), rate)
    return path


def test_images_and_sounds_are_found_by_example(engine: Engine, tmp_path: Path) -> None:
    acme = add_tenant(engine, "acme")
    images = [_image(tmp_path / f"image-{seed}.png", seed) for seed in range(6)]
    sounds = [_tone(tmp_path / f"tone-{hz}.wav", hz) for hz in (220, 880, 3000)]
    noise = tmp_path / "noise.wav"
    soundfile.write(noise, np.random.default_rng(0).standard_normal(16000) * 0.2, 16000)
    embedders = Embedders()
    indexer = HoldingIndexer.for_job(engine, acme, "default", embedders)
    outcome = ingest_paths(
        engine, IngestRequest(tenant_id=acme), [*images, *sounds, noise], indexer=indexer
    )
    assert [f.embedded for f in outcome.files] == [1] * 10
    # Images and sounds never needed the text model: it was not even created.
    assert embedders._text_model is None

    # A smaller JPEG re-encoding of image 3 finds image 3 first; a louder 880 Hz finds 880 Hz.
    probe = tmp_path / "probe.jpg"
    Image.open(images[3]).resize((90, 90)).save(probe, quality=85)
    hits = search(engine, acme, Query(like=read_example(probe)), 3).hits
    assert hits[0].source.endswith("image-3.png")
    assert all(hit.modality == "image" for hit in hits)
    louder = tmp_path / "louder.wav"
    rate = 16000
    soundfile.write(louder, 0.9 * np.sin(2 * np.pi * 880 * np.arange(rate) / rate), rate)
    hits = search(engine, acme, Query(like=read_example(louder)), 4).hits
    assert hits[0].source.endswith("tone-880.wav")
    assert {hit.modality for hit in hits} == {"audio"}

    # No cross-modal claims: text finds no images, and a text file is no example.
    assert find(engine, acme, "a picture of colours").hits == []
    note = tmp_path / "note.txt"
    note.write_text("hello\n", encoding="utf-8")
    with pytest.raises(SearchError, match="a search by example takes an image or an audio file"):
        search(engine, acme, Query(like=read_example(note)), 3)


ORIGINAL = "The committee approved the budget for the new library building on Monday."
NEAR = "The committee approved the budget for the new library building on Tuesday."
UNRELATED = "Penguins huddle together to survive the Antarctic winter."


def test_near_duplicates_are_linked_not_dropped(engine: Engine, tmp_path: Path) -> None:
    acme = add_tenant(engine, "acme")
    (tmp_path / "first.txt").write_text(ORIGINAL + "\n", encoding="utf-8")
    (tmp_path / "second.txt").write_text(NEAR + "\n\n" + UNRELATED + "\n", encoding="utf-8")
    ingest(engine, acme, tmp_path / "first.txt")
    request = IngestRequest(tenant_id=acme, dedup_policy="near-duplicates")
    outcome = ingest_paths(engine, request, [tmp_path / "second.txt"])

    (file,) = outcome.files
    assert file.embedded == 2  # kept and embedded, not dropped
    (link,) = file.similar
    assert link["similarity"] >= 0.95
    with engine.connect() as connection:
        stored = connection.execute(
            text(
                "SELECT a.canonical_text AS new, b.canonical_text AS old, s.policy_name "
                "FROM atom_similarities s JOIN atoms a ON a.atom_id = s.atom_id "
                "JOIN atoms b ON b.atom_id = s.similar_atom_id"
            )
        ).one()
    assert (stored.new.strip(), stored.old.strip(), stored.policy_name) == (
        NEAR,
        ORIGINAL,
        "near-duplicates",
    )
    # Both remain searchable.
    assert len(find(engine, acme, NEAR, k=5).hits) == 3


def test_near_duplicates_only_among_what_the_tenant_sees(engine: Engine, tmp_path: Path) -> None:
    acme, globex = add_tenant(engine, "acme"), add_tenant(engine, "globex")
    (tmp_path / "acme.txt").write_text(ORIGINAL + "\n", encoding="utf-8")
    (tmp_path / "globex.txt").write_text(NEAR + "\n", encoding="utf-8")
    ingest(engine, acme, tmp_path / "acme.txt")
    request = IngestRequest(tenant_id=globex, dedup_policy="near-duplicates")
    outcome = ingest_paths(engine, request, [tmp_path / "globex.txt"])
    # Acme's private paragraph is not globex's neighbour (that would reveal it).
    assert outcome.files[0].similar == []
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(atom_similarities)).scalar() == 0


def test_unknown_policy_is_refused_before_anything_is_written(
    engine: Engine, tmp_path: Path
) -> None:
    acme = add_tenant(engine, "acme")
    (tmp_path / "a.txt").write_text(ORIGINAL + "\n", encoding="utf-8")
    with pytest.raises(UnknownPolicyError, match=r"'fuzzy'.*default, near-duplicates"):
        ingest_paths(
            engine, IngestRequest(tenant_id=acme, dedup_policy="fuzzy"), [tmp_path / "a.txt"]
        )
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(ingestion_jobs)).scalar() == 0
