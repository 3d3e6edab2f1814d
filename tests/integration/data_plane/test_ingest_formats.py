"""Every supported format ingested into the real database and exported byte for byte; model
files get their model and tensor rows, and each tensor's atom is exactly that tensor's bytes."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image
from safetensors.numpy import save_file
from sqlalchemy import Engine, select, text
from tests.integration.data_plane.data_plane_support import (
    GGUF_ARRAYS,
    MINILM_SAFETENSORS,
    ONNX_ARRAYS,
    SAFETENSORS_ARRAYS,
    add_tenant,
    assert_store_consistent,
    by_name,
    export,
    ingest,
    random_bytes,
    write_audio,
    write_docx,
    write_gguf,
    write_image,
    write_onnx,
    write_pdf,
    write_safetensors,
    write_text_files,
    write_video,
)

from hartonomous.atoms.component_stream import decode_component_stream
from hartonomous.atoms.read import component_stream, summarise
from hartonomous.db.tables import atom_relations, atoms, model_tensors, models

EXPECTED_KINDS = {
    "notes.txt": ("text", "plain"),
    "readme.md": ("text", "markdown"),
    "table.csv": ("text", "csv"),
    "config.json": ("text", "json"),
    "config.yaml": ("text", "yaml"),
    "data.xml": ("text", "xml"),
    "service.log": ("text", "log"),
    "page.html": ("document", "html"),
    "report.pdf": ("document", "pdf"),
    "atlas.docx": ("document", "docx"),
    "noise.png": ("image", "png"),
    "noise.jpg": ("image", "jpeg"),
    "tone.wav": ("audio", "wav"),
    "tone.flac": ("audio", "flac"),
    "tone.ogg": ("audio", "ogg"),
    "clip.mp4": ("video", "mp4"),
    "random.bin": ("binary", "octet-stream"),
    "tiny.safetensors": ("model", "safetensors"),
    "tiny.gguf": ("model", "gguf"),
    "tiny.onnx": ("model", "onnx"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small file of every format, made by the format's real writer (built once)."""
    folder = tmp_path_factory.mktemp("formats")
    write_text_files(folder)
    write_pdf(folder / "report.pdf", ["First page about atoms", "Second page about holdings"])
    write_docx(folder / "atlas.docx", ["Every file becomes atoms.", "Tenants hold atoms."])
    write_image(folder / "noise.png", "PNG")
    write_image(folder / "noise.jpg", "JPEG")
    for name in ("tone.wav", "tone.flac", "tone.ogg"):
        write_audio(folder / name)
    write_video(folder / "clip.mp4")
    # Several chunks (average 64 KiB), so the file is a composite of content-defined chunks.
    (folder / "random.bin").write_bytes(random_bytes(300_000))
    write_safetensors(folder / "tiny.safetensors")
    write_gguf(folder / "tiny.gguf")
    write_onnx(folder / "tiny.onnx")
    assert {path.name for path in folder.iterdir()} == set(EXPECTED_KINDS)
    return folder


def test_every_format_exports_byte_identical(engine: Engine, corpus: Path) -> None:
    tenant = add_tenant(engine, "acme")

    outcome = ingest(engine, tenant, corpus)

    assert outcome.status == "completed"
    files = by_name(outcome)
    assert set(files) == set(EXPECTED_KINDS)
    assert sum(file.new_bytes for file in files.values()) == outcome.new_bytes
    for name, (modality, subtype) in EXPECTED_KINDS.items():
        file = files[name]
        original = (corpus / name).read_bytes()
        assert (file.status, file.error) == ("ingested", None), name
        assert file.atom_id == hashlib.sha256(original).hexdigest(), name
        assert export(engine, file.atom_id) == original, name
        with engine.connect() as connection:
            row = connection.execute(
                select(atoms.c.modality, atoms.c.subtype, atoms.c.size_bytes).where(
                    atoms.c.atom_id == bytes.fromhex(file.atom_id)
                )
            ).one()
            summary = summarise(connection, tenant, bytes.fromhex(file.atom_id))
        assert (row.modality, row.subtype, row.size_bytes) == (modality, subtype, len(original))
        assert [holder["source_uri"] for holder in summary.holders] == [
            (corpus / name).resolve().as_uri()
        ]
    assert_store_consistent(engine)


def test_text_file_is_its_paragraphs(engine: Engine, corpus: Path) -> None:
    tenant = add_tenant(engine, "acme")
    path = corpus / "notes.txt"

    (file,) = ingest(engine, tenant, path).files

    assert file.atom_id is not None
    root = bytes.fromhex(file.atom_id)
    with engine.connect() as connection:
        runs = decode_component_stream(component_stream(connection, root))
        children = [
            connection.execute(
                select(atoms.c.kind, atoms.c.canonical_text).where(atoms.c.atom_id == run.child)
            ).one()
            for run in runs
        ]
    paragraphs = path.read_text(encoding="utf-8").split("\n\n")
    assert [child.kind for child in children] == ["leaf"] * 3
    assert "".join(child.canonical_text for child in children) == path.read_text(encoding="utf-8")
    assert children[0].canonical_text == paragraphs[0] + "\n\n"


def test_binary_file_is_a_stream_of_chunks(engine: Engine, corpus: Path) -> None:
    tenant = add_tenant(engine, "acme")
    data = (corpus / "random.bin").read_bytes()

    (file,) = ingest(engine, tenant, corpus / "random.bin").files

    assert file.atom_id is not None
    with engine.connect() as connection:
        runs = decode_component_stream(component_stream(connection, bytes.fromhex(file.atom_id)))
        sizes = [
            connection.execute(
                select(atoms.c.size_bytes).where(atoms.c.atom_id == run.child)
            ).scalar_one()
            for run in runs
        ]
    assert len(runs) >= 2
    assert sum(sizes) == len(data)
    position = 0
    for run, size in zip(runs, sizes, strict=True):
        assert export(engine, run.child.hex()) == data[position : position + size]
        position += size


def test_documents_and_video_relate_their_derived_atoms(engine: Engine, corpus: Path) -> None:
    tenant = add_tenant(engine, "acme")

    files = by_name(
        ingest(engine, tenant, corpus / "report.pdf", corpus / "atlas.docx", corpus / "clip.mp4")
    )

    def related(name: str) -> list[tuple[str, bytes]]:
        atom_id = files[name].atom_id
        assert atom_id is not None
        with engine.connect() as connection:
            rows = connection.execute(
                select(atom_relations.c.relation_type, atom_relations.c.to_atom_id)
                .where(atom_relations.c.from_atom_id == bytes.fromhex(atom_id))
                .order_by(atom_relations.c.relation_type, atom_relations.c.ordinal)
            ).all()
        return [(row.relation_type, export(engine, bytes(row.to_atom_id).hex())) for row in rows]

    assert related("report.pdf") == [
        ("extracted_text", b"First page about atoms"),
        ("extracted_text", b"Second page about holdings"),
    ]
    docx_texts = [data for kind, data in related("atlas.docx") if kind == "extracted_text"]
    assert docx_texts == [b"Atlas of atoms", b"Every file becomes atoms.", b"Tenants hold atoms."]
    media = related("clip.mp4")
    assert {kind for kind, _ in media} == {"derived_media"}
    frames = [data for _, data in media if data.startswith(b"\x89PNG")]
    assert frames
    with Image.open(io.BytesIO(frames[0])) as frame:
        assert frame.size == (64, 48)
    (track,) = [data for _, data in media if data.startswith(b"fLaC")]
    assert soundfile.info(io.BytesIO(track)).samplerate == 22050
    assert_store_consistent(engine)


def _tensor_rows(engine: Engine, model_atom: str) -> dict[str, dict[str, object]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(model_tensors)
            .where(model_tensors.c.model_atom_id == bytes.fromhex(model_atom))
            .order_by(model_tensors.c.ordinal)
        ).all()
    return {row.name: dict(row._mapping) for row in rows}


def _model_row(engine: Engine, model_atom: str) -> dict[str, object]:
    with engine.connect() as connection:
        row = connection.execute(
            select(models).where(models.c.atom_id == bytes.fromhex(model_atom))
        ).one()
    return dict(row._mapping)


@dataclass(frozen=True)
class ModelCase:
    name: str
    model_format: str
    arrays: dict[str, np.ndarray]
    architecture: str | None


@pytest.mark.parametrize(
    "case",
    [
        ModelCase("tiny.safetensors", "safetensors", SAFETENSORS_ARRAYS, "tiny-mlp"),
        ModelCase("tiny.gguf", "gguf", GGUF_ARRAYS, "llama"),
        ModelCase("tiny.onnx", "onnx", ONNX_ARRAYS, None),
    ],
    ids=lambda case: case.model_format,
)
def test_model_rows_and_tensor_atoms(engine: Engine, corpus: Path, case: ModelCase) -> None:
    name, model_format, arrays, architecture = (
        case.name,
        case.model_format,
        case.arrays,
        case.architecture,
    )
    tenant = add_tenant(engine, "acme")
    path = corpus / name

    (file,) = ingest(engine, tenant, path).files

    assert file.atom_id is not None
    model = _model_row(engine, file.atom_id)
    assert model["format"] == model_format
    if architecture is not None:
        assert model["architecture"] == architecture
    assert model["tensor_count"] == len(arrays)
    assert model["parameter_count"] == sum(array.size for array in arrays.values())
    tensors = _tensor_rows(engine, file.atom_id)
    assert set(tensors) == set(arrays)
    raw = path.read_bytes()
    for tensor_name, array in arrays.items():
        row = tensors[tensor_name]
        assert list(row["shape"]) == list(array.shape), tensor_name  # type: ignore[call-overload]
        assert row["parameter_count"] == array.size
        assert row["byte_length"] == array.nbytes
        if array.nbytes == 0:
            assert row["tensor_atom_id"] is None
            continue
        tensor_atom = row["tensor_atom_id"]
        assert isinstance(tensor_atom, bytes)
        stored = export(engine, tensor_atom.hex())
        assert stored == array.tobytes(), tensor_name
        offset = row["byte_offset"]
        assert isinstance(offset, int)
        assert raw[offset : offset + array.nbytes] == stored
    assert export(engine, file.atom_id) == raw
    assert_store_consistent(engine)


def test_minilm_safetensors(engine: Engine) -> None:
    tenant = add_tenant(engine, "acme")
    raw = MINILM_SAFETENSORS.read_bytes()

    outcome = ingest(engine, tenant, MINILM_SAFETENSORS)

    (file,) = outcome.files
    assert (file.status, file.error, file.new_bytes) == ("ingested", None, len(raw))
    assert file.atom_id == hashlib.sha256(raw).hexdigest()
    assert export(engine, file.atom_id) == raw
    model = _model_row(engine, file.atom_id)
    assert (model["format"], model["architecture"]) == ("safetensors", "bert")
    assert (model["tensor_count"], model["parameter_count"]) == (104, 22_713_728)
    assert model["dtypes"] == {"f32": 103, "i64": 1}
    tensors = _tensor_rows(engine, file.atom_id)
    assert len(tensors) == 104
    # The tensors and the header between them tile the file, each its own atom.
    with engine.connect() as connection:
        runs = decode_component_stream(component_stream(connection, bytes.fromhex(file.atom_id)))
        distinct_tensor_atoms = connection.execute(
            text(
                "SELECT count(DISTINCT tensor_atom_id) FROM model_tensors "
                "WHERE model_atom_id = :model"
            ),
            {"model": bytes.fromhex(file.atom_id)},
        ).scalar_one()
    assert {run.child for run in runs} >= {row["tensor_atom_id"] for row in tensors.values()}
    assert distinct_tensor_atoms >= 100
    for tensor_name, row in tensors.items():
        tensor_atom, offset, length = row["tensor_atom_id"], row["byte_offset"], row["byte_length"]
        assert isinstance(tensor_atom, bytes)
        assert isinstance(offset, int)
        assert isinstance(length, int)
        assert export(engine, tensor_atom.hex()) == raw[offset : offset + length], tensor_name
    word_embeddings = tensors["embeddings.word_embeddings.weight"]
    assert word_embeddings["shape"] == [30522, 384]
    assert word_embeddings["dtype"] == "f32"


def test_model_naming_a_long_architecture_is_ingested(engine: Engine, tmp_path: Path) -> None:
    name = "custom-" + "very-long-architecture-name-" * 8
    path = tmp_path / "long.safetensors"
    save_file(SAFETENSORS_ARRAYS, str(path), metadata={"architecture": name})
    tenant = add_tenant(engine, "acme")

    (file,) = ingest(engine, tenant, path).files

    assert (file.status, file.error) == ("ingested", None)
    assert file.atom_id is not None
    model = _model_row(engine, file.atom_id)
    assert isinstance(model["architecture"], str)
    assert name.startswith(model["architecture"])
    assert model["metadata"]["header_metadata"] == {"architecture": name}  # type: ignore[index]
    assert export(engine, file.atom_id) == path.read_bytes()
