"""Strings PostgreSQL cannot store, from file contents and file names: every file of the folder
is ingested, the job ends terminal, the strings are stored visibly, the bytes stay exact."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

import numpy as np
from PIL import Image
from safetensors.numpy import save_file
from sqlalchemy import Engine, select
from tests.conftest import Cli
from tests.integration.data_plane.data_plane_support import (
    add_tenant,
    assert_store_consistent,
    by_name,
    export,
    ingest,
)

from hartonomous.db.tables import (
    atoms,
    holdings,
    ingestion_job_atoms,
    ingestion_jobs,
    model_tensors,
    models,
)


def _safetensors_with_raw_header(path: Path, header: str, data: bytes) -> Path:
    raw = header.encode("ascii")
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _folder_around(folder: Path, middle: Path) -> list[str]:
    """Good files before and after `middle` in name order."""
    (folder / "a-first.txt").write_text("First file.\n", encoding="utf-8")
    (folder / "z-last.txt").write_text("Last file.\n", encoding="utf-8")
    return ["a-first.txt", middle.name, "z-last.txt"]


def test_tensor_name_with_a_lone_surrogate_escape_is_stored_visibly(
    engine: Engine, tmp_path: Path
) -> None:
    add_tenant(engine, "acme")
    data = np.arange(2, dtype=np.float32).tobytes()
    model = _safetensors_with_raw_header(
        tmp_path / "m-surrogate.safetensors",
        '{"w\\ud800": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
        data,
    )
    names = _folder_around(tmp_path, model)
    job = ingest(engine, "acme", tmp_path)
    files = by_name(job)
    assert [files[name].status for name in names] == ["ingested"] * 3, job
    assert job.status == "completed"
    assert export(engine, files[model.name].atom_id or "") == model.read_bytes()
    with engine.connect() as connection:
        tensor = connection.execute(select(model_tensors.c.name)).scalar_one()
    assert tensor == "w\\ud800"
    assert_store_consistent(engine)


def test_model_metadata_with_lone_surrogate_and_nul_is_stored_visibly(
    engine: Engine, tmp_path: Path
) -> None:
    add_tenant(engine, "acme")
    model = tmp_path / "m-meta.safetensors"
    save_file({"w": np.ones(3, dtype=np.float32)}, str(model), metadata={"author": "Ada"})
    # Rewrite the header with escapes safetensors itself would refuse to write (same length).
    raw = model.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header["__metadata__"] = {"author": "Ada\\udfff", "note": "a\\u0000b"}
    text = json.dumps(header).replace("\\\\u", "\\u")
    _safetensors_with_raw_header(model, text.ljust(length), raw[8 + length :])
    job = ingest(engine, "acme", model)
    assert job.files[0].status == "ingested", job.files[0].error
    with engine.connect() as connection:
        stored = connection.execute(select(models.c.metadata)).scalar_one()
    assert stored["header_metadata"] == {"author": "Ada\\udfff", "note": "a\ufffdb"}
    assert export(engine, job.files[0].atom_id or "") == model.read_bytes()


def test_exif_text_with_a_nul_inside_is_stored_visibly(engine: Engine, tmp_path: Path) -> None:
    add_tenant(engine, "acme")
    image = tmp_path / "photo.tiff"
    exif = Image.Exif()
    exif[0x013B] = "Ada\x00Lovelace"  # Artist
    Image.new("RGB", (8, 8), "red").save(image, format="TIFF", exif=exif)
    job = ingest(engine, "acme", image)
    assert job.files[0].status == "ingested", job.files[0].error
    with engine.connect() as connection:
        metadata = connection.execute(
            select(atoms.c.metadata).where(
                atoms.c.atom_id == bytes.fromhex(job.files[0].atom_id or "")
            )
        ).scalar_one()
    assert metadata["exif"]["Artist"] == "Ada\ufffdLovelace"


def test_file_name_that_is_not_utf8_is_ingested_and_recoverable(
    engine: Engine, cli: Cli, tmp_path: Path
) -> None:
    add_tenant(engine, "acme")
    raw_name = b"caf\xe9 100%.txt"
    with open(os.path.join(os.fsencode(tmp_path), raw_name), "wb") as handle:
        handle.write(b"Latin-1 named notes.\n")
    shown = "caf\\xe9 100%.txt"
    names = _folder_around(tmp_path, tmp_path / shown)

    result = cli("--json", "ingest", str(tmp_path), "--tenant", "acme")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert [Path(f["path"]).name for f in summary["files"]] == names
    assert all(f["status"] == "ingested" for f in summary["files"])

    with engine.connect() as connection:
        holding = connection.execute(
            select(holdings.c.source_uri, holdings.c.metadata).where(
                holdings.c.metadata["file_name"].astext == shown
            )
        ).one()
        job_path = connection.execute(
            select(ingestion_job_atoms.c.path).where(ingestion_job_atoms.c.ordinal == 1)
        ).scalar_one()
        job_status = connection.execute(select(ingestion_jobs.c.status)).scalar_one()
    uri = urlsplit(holding.source_uri)
    assert uri.scheme == "file"
    assert unquote_to_bytes(uri.path) == os.fsencode(tmp_path.resolve()) + b"/" + raw_name
    assert job_path.endswith(shown)
    assert job_status == "completed"
