"""Files that change while they are read fail with "changed while being read" and leave nothing
behind. The change is made deterministically from inside the read: right after the first chunk
of the file has been cut, by wrapping the chunker the ingestion reads through."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from tests.integration.data_plane.data_plane_support import (
    add_tenant,
    assert_store_consistent,
    atom_ids,
    by_name,
    export,
    ingest,
    random_bytes,
)

from hartonomous.atoms.chunking import Chunk, chunk_stream
from hartonomous.db.tables import holdings, ingestion_job_atoms
from hartonomous.ingest import layout
from hartonomous.ingest.pipeline import SMALL_BYTES, FileOutcome

# A large file is stored alone, in its own transaction; a small one with others, in a batch.
SIZES = pytest.mark.parametrize("size", [4 * 1024 * 1024, SMALL_BYTES], ids=["alone", "batched"])


def _after_first_chunk(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> list[bool]:
    """Make `change` happen once, during the read, right after the first chunk is cut."""
    changed: list[bool] = []

    def chunks(reader: object) -> Iterator[Chunk]:
        for index, chunk in enumerate(chunk_stream(reader)):  # type: ignore[arg-type]
            yield chunk
            if index == 0 and not changed:
                change()
                changed.append(True)

    monkeypatch.setattr(layout, "chunk_stream", chunks)
    return changed


def _files(folder: Path, size: int) -> Path:
    folder.mkdir()
    (folder / "a-before.txt").write_text("Before.\n", encoding="utf-8")
    big = folder / "m-changing.bin"
    big.write_bytes(random_bytes(size, seed=7))
    # An old modification time, so a write during the read shows even within one clock tick.
    os.utime(big, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    (folder / "z-after.bin").write_bytes(random_bytes(100_000, seed=8))
    return big


def _assert_only_the_good_files_left(engine: Engine, files: dict[str, FileOutcome]) -> None:
    """Two holdings, the changing file's one failed row, and no atom of it in any version."""
    good = {bytes.fromhex(files[n].atom_id or "") for n in ("a-before.txt", "z-after.bin")}
    with engine.connect() as connection:
        held = connection.execute(select(func.count()).select_from(holdings)).scalar_one()
        failed = connection.execute(
            select(ingestion_job_atoms.c.path).where(ingestion_job_atoms.c.status == "failed")
        ).scalars()
        failed_names = [Path(path).name for path in failed]
        children = {
            bytes(child)
            for (child,) in connection.execute(
                text("SELECT child_atom_id FROM atom_components WHERE parent_atom_id = ANY(:ids)"),
                {"ids": list(good)},
            )
        }
    assert held == 2
    assert failed_names == ["m-changing.bin"]
    assert atom_ids(engine) <= good | children
    assert_store_consistent(engine)


@SIZES
def test_file_truncated_during_its_read_fails_and_leaves_nothing(
    size: int, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_tenant(engine, "acme")
    big = _files(tmp_path / "folder", size)
    changed = _after_first_chunk(monkeypatch, lambda: os.truncate(big, size // 4))
    job = ingest(engine, "acme", tmp_path / "folder")
    files = by_name(job)
    assert changed == [True]
    assert files["m-changing.bin"].status == "failed"
    assert "m-changing.bin: changed while being read" in (files["m-changing.bin"].error or "")
    assert files["a-before.txt"].status == files["z-after.bin"].status == "ingested"
    assert job.status == "completed_with_errors"
    assert export(engine, files["z-after.bin"].atom_id or "") == random_bytes(100_000, seed=8)
    _assert_only_the_good_files_left(engine, files)


@SIZES
def test_file_modified_in_place_during_its_read_fails_and_leaves_nothing(
    size: int, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_tenant(engine, "acme")
    big = _files(tmp_path / "folder", size)

    def overwrite_the_end() -> None:
        with big.open("r+b") as handle:
            handle.seek(size - 200_000)
            handle.write(random_bytes(200_000, seed=9))

    changed = _after_first_chunk(monkeypatch, overwrite_the_end)
    job = ingest(engine, "acme", tmp_path / "folder")
    files = by_name(job)
    assert changed == [True]
    assert big.stat().st_size == size
    assert files["m-changing.bin"].status == "failed"
    assert "changed while being read" in (files["m-changing.bin"].error or "")
    _assert_only_the_good_files_left(engine, files)
