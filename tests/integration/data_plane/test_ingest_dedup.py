"""Deduplication: across tenants, across documents (paragraphs), across model files (tensors),
and across versions of a binary (content-defined chunks)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, select, text
from tests.integration.data_plane.data_plane_support import (
    MINILM_SAFETENSORS,
    add_tenant,
    assert_store_consistent,
    atom_ids,
    by_name,
    export,
    ingest,
    random_bytes,
    reference_count_mismatches,
    reference_counts,
    write_gguf,
    write_image,
    write_pdf,
    write_safetensors,
    write_text_files,
)

from hartonomous.atoms.chunking import DEFAULT_MAX_SIZE, chunk_bytes
from hartonomous.db.tables import atom_reference_counts, atoms, holdings, model_tensors


def _mixed_folder(folder: Path) -> Path:
    folder.mkdir()
    write_text_files(folder)
    write_pdf(folder / "report.pdf", ["A page about atoms"])
    write_image(folder / "noise.png", "PNG", side=200)
    (folder / "random.bin").write_bytes(random_bytes(400_000))
    write_safetensors(folder / "tiny.safetensors")
    write_gguf(folder / "tiny.gguf")
    return folder


def test_second_tenant_stores_no_new_bytes(engine: Engine, tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path / "shared")
    total = sum(path.stat().st_size for path in folder.iterdir())
    first_tenant, second_tenant = add_tenant(engine, "acme"), add_tenant(engine, "globex")

    first = ingest(engine, first_tenant, folder)
    stored = atom_ids(engine)
    second = ingest(engine, second_tenant, folder)

    assert first.status == second.status == "completed"
    assert first.new_bytes > 0
    assert second.new_bytes == 0
    assert second.reused_bytes == total
    assert {file.status for file in second.files} == {"ingested"}
    assert all(file.new_bytes == 0 for file in second.files)
    assert atom_ids(engine) == stored
    assert [file.atom_id for file in second.files] == [file.atom_id for file in first.files]
    with engine.connect() as connection:
        held = connection.execute(
            select(holdings.c.tenant_id, holdings.c.atom_id).order_by(holdings.c.tenant_id)
        ).all()
    assert len(held) == 2 * len(first.files)
    for file in second.files:
        assert file.atom_id is not None
        assert export(engine, file.atom_id) == Path(file.path).read_bytes()
    assert_store_consistent(engine)


def test_reingesting_the_same_files_is_unchanged(engine: Engine, tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path / "again")
    tenant = add_tenant(engine, "acme")
    ingest(engine, tenant, folder)
    counts = reference_counts(engine)

    again = ingest(engine, tenant, folder)

    assert {file.status for file in again.files} == {"unchanged"}
    assert again.new_bytes == 0
    assert reference_counts(engine) == counts
    assert_store_consistent(engine)


def test_identical_paragraphs_are_one_atom_across_documents(engine: Engine, tmp_path: Path) -> None:
    shared = "The same paragraph appears in both documents, word for word.\n\n"
    first_only = "Only the first document opens like this.\n\n"
    second_only = "The second document opens differently.\n\n"
    closing = "Each document closes on its own line.\n"
    first = tmp_path / "first.txt"
    first.write_text(first_only + shared + closing, encoding="utf-8")
    second = tmp_path / "second.md"
    second.write_text(second_only + shared + "And a different close.\n", encoding="utf-8")
    tenant = add_tenant(engine, "acme")

    ingest(engine, tenant, first)
    outcome = ingest(engine, tenant, second)

    (file,) = outcome.files
    assert file.new_bytes == len(second_only) + len("And a different close.\n")
    assert file.reused_bytes == len(shared)
    paragraph_atom = hashlib.sha256(shared.encode()).digest()
    with engine.connect() as connection:
        paragraph = connection.execute(
            select(atoms.c.kind, atoms.c.canonical_text, atom_reference_counts.c.reference_count)
            .join(atom_reference_counts)
            .where(atoms.c.atom_id == paragraph_atom)
        ).one()
    assert (paragraph.kind, paragraph.canonical_text) == ("leaf", shared)
    assert paragraph.reference_count == 2  # one component row in each document
    assert export(engine, paragraph_atom.hex()) == shared.encode()
    assert_store_consistent(engine)


def test_identical_tensors_are_one_atom_across_model_files(engine: Engine, tmp_path: Path) -> None:
    weight = np.random.default_rng(3).standard_normal((256, 256)).astype(np.float32)
    first = write_safetensors(
        tmp_path / "first.safetensors",
        {"shared.weight": weight, "a.bias": np.ones(256, np.float32)},
    )
    second = write_safetensors(
        tmp_path / "second.safetensors",
        {"shared.weight": weight, "b.bias": np.zeros(512, np.float32)},
    )
    tenant = add_tenant(engine, "acme")

    ingest(engine, tenant, first)
    (file,) = ingest(engine, tenant, second).files

    assert file.atom_id is not None
    assert file.new_bytes <= second.stat().st_size - weight.nbytes
    assert file.reused_bytes >= weight.nbytes
    with engine.connect() as connection:
        shared_atoms = connection.execute(
            select(model_tensors.c.tensor_atom_id).where(model_tensors.c.name == "shared.weight")
        ).all()
    assert len(shared_atoms) == 2
    assert shared_atoms[0] == shared_atoms[1]
    assert export(engine, bytes(shared_atoms[0].tensor_atom_id).hex()) == weight.tobytes()
    assert_store_consistent(engine)


def test_insertion_near_the_start_costs_a_few_chunks(engine: Engine, tmp_path: Path) -> None:
    original = random_bytes(4 * 1024 * 1024)
    edited = original[:1000] + b"a few inserted bytes" + original[1000:]
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "blob.bin").write_bytes(original)
    (tmp_path / "v2" / "blob.bin").write_bytes(edited)
    tenant = add_tenant(engine, "acme")

    first = ingest(engine, tenant, tmp_path / "v1")
    before = atom_ids(engine)
    second = ingest(engine, tenant, tmp_path / "v2")

    assert first.new_bytes == len(original)
    (file,) = second.files
    assert file.status == "ingested"
    with engine.connect() as connection:
        new_atoms = connection.execute(
            select(atoms.c.kind, atoms.c.size_bytes).where(atoms.c.atom_id.not_in(list(before)))
        ).all()
    new_leaves = [atom.size_bytes for atom in new_atoms if atom.kind == "leaf"]
    assert 1 <= len(new_leaves) <= 3
    assert file.new_bytes == sum(new_leaves) <= 3 * DEFAULT_MAX_SIZE
    assert file.reused_bytes == len(edited) - file.new_bytes
    assert file.atom_id is not None
    assert export(engine, file.atom_id) == edited
    assert_store_consistent(engine)


def test_second_tenant_of_minilm_stores_nothing_new(engine: Engine) -> None:
    first_tenant, second_tenant = add_tenant(engine, "acme"), add_tenant(engine, "globex")
    first = ingest(engine, first_tenant, MINILM_SAFETENSORS)
    stored = atom_ids(engine)

    second = ingest(engine, second_tenant, MINILM_SAFETENSORS)

    size = MINILM_SAFETENSORS.stat().st_size
    assert (first.new_bytes, first.reused_bytes) == (size, 0)
    assert (second.new_bytes, second.reused_bytes) == (0, size)
    assert by_name(second)["model.safetensors"].status == "ingested"
    assert atom_ids(engine) == stored
    assert reference_count_mismatches(engine) == []


def _entries(engine: Engine, tenant: str, name: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(
                text(
                    "SELECT count(*) FROM search_entries e JOIN holdings h "
                    "ON h.tenant_id = e.tenant_id AND h.holding_id = e.holding_id "
                    "WHERE h.tenant_id = :tenant AND h.source_uri LIKE :name"
                ),
                {"tenant": tenant, "name": f"%/{name}"},
            )
        )


def test_binary_file_reusing_text_bytes_is_found_through_them(
    engine: Engine, tmp_path: Path
) -> None:
    # A binary file whose bytes are all new reaches nothing searchable and is not indexed; one
    # whose first chunk is an atom a text file brought reaches that text's vectors, so search
    # finds it through them (its holding gets their entries), as it always did.
    line = "Holdings reach atoms; atoms are addressed by the SHA-256 of their bytes.\n"
    text_part = (line * (300 * 1024 // len(line) + 1)).encode()
    opaque = text_part + b"\x00" + random_bytes(100_000)
    first_chunk = next(iter(chunk_bytes(opaque)))
    assert first_chunk.length < len(text_part)
    (tmp_path / "part.txt").write_bytes(bytes(first_chunk.data))
    (tmp_path / "blob.bin").write_bytes(opaque)
    (tmp_path / "fresh.bin").write_bytes(random_bytes(5000, seed=7))
    tenant = add_tenant(engine, "acme")

    ingest(engine, tenant, tmp_path / "part.txt")
    files = by_name(ingest(engine, tenant, tmp_path / "blob.bin", tmp_path / "fresh.bin"))

    assert {file.status for file in files.values()} == {"ingested"}
    assert files["blob.bin"].reused_bytes == first_chunk.length
    assert _entries(engine, tenant, "part.txt") > 0
    assert _entries(engine, tenant, "blob.bin") == _entries(engine, tenant, "part.txt")
    assert _entries(engine, tenant, "fresh.bin") == 0
