"""Bad input, each case in a batch with good files: the bad file fails with a reason naming it and
its problem, leaves no holding and no atom behind, and the good files are ingested."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from tests.integration.data_plane.data_plane_support import (
    add_tenant,
    assert_store_consistent,
    atom_ids,
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
    write_video,
)

from hartonomous.db.tables import holdings, ingestion_job_atoms, ingestion_jobs
from hartonomous.ingest.models.safetensors_reader import MAX_HEADER_LENGTH

GOOD_FILES = ("notes.txt", "noise.png", "tiny.safetensors", "blob.bin")


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    (folder / "notes.txt").write_text("A good file.\n\nIt has two paragraphs.\n", encoding="utf-8")
    write_image(folder / "noise.png", "PNG")
    write_safetensors(folder / "tiny.safetensors")
    (folder / "blob.bin").write_bytes(random_bytes(200_000))
    return folder


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _safetensors_claiming(path: Path, header_length: int) -> Path:
    path.write_bytes(struct.pack("<Q", header_length) + b'{"a": {"dtype": "F32"')
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _decompression_bomb(path: Path) -> Path:
    """A well-formed PNG header for a 100000 x 100000 image with a tiny pixel stream."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )
    return path


@dataclass(frozen=True)
class BadInput:
    """Makes the bad entry inside `batch` (outside it: `elsewhere`); returns the failing path."""

    make: Callable[[Path, Path], Path]
    reason: str


BAD_INPUTS: dict[str, BadInput] = {
    "truncated-safetensors": BadInput(
        lambda batch, _: _cut(write_safetensors(batch / "cut.safetensors"), 0.6), "truncated"
    ),
    "corrupt-gguf": BadInput(
        lambda batch, _: _cut(write_gguf(batch / "cut.gguf"), 0.1), "truncated"
    ),
    "truncated-onnx": BadInput(
        lambda batch, _: _cut(write_onnx(batch / "cut.onnx"), 0.5), "not a valid ONNX protobuf"
    ),
    "garbage-onnx": BadInput(
        lambda batch, _: _garbage(batch / "model.onnx"), r"ONNX (protobuf|checker)"
    ),
    "truncated-png": BadInput(
        lambda batch, _: _cut(write_image(batch / "cut.png", "PNG"), 0.5), "corrupt image"
    ),
    "truncated-jpeg": BadInput(
        lambda batch, _: _cut(write_image(batch / "cut.jpg", "JPEG"), 0.5), "corrupt image"
    ),
    "truncated-wav": BadInput(
        lambda batch, _: _cut(write_audio(batch / "cut.wav", seconds=2), 0.5), "truncated"
    ),
    "truncated-pdf": BadInput(
        lambda batch, _: _cut(write_pdf(batch / "cut.pdf", ["one", "two"]), 0.5), "corrupt PDF"
    ),
    "truncated-docx": BadInput(
        lambda batch, _: _cut(write_docx(batch / "cut.docx", ["soon cut"]), 0.3), "corrupt DOCX"
    ),
    "truncated-mp4": BadInput(
        lambda batch, _: _cut(write_video(batch / "cut.mp4", seconds=2), 0.2), "corrupt media"
    ),
    "zero-byte-file": BadInput(lambda batch, _: _empty(batch / "empty.txt"), r"empty file \(0"),
    "zero-byte-model": BadInput(lambda batch, _: _empty(batch / "empty.safetensors"), "too short"),
    "safetensors-huge-header-length": BadInput(
        lambda batch, _: _safetensors_claiming(batch / "huge.safetensors", 2**63), "limit"
    ),
    "safetensors-header-past-eof": BadInput(
        lambda batch, _: _safetensors_claiming(batch / "big.safetensors", MAX_HEADER_LENGTH - 1),
        "truncated",
    ),
    "decompression-bomb": BadInput(
        lambda batch, _: _decompression_bomb(batch / "bomb.png"), "decompression bomb"
    ),
    "symlink-loop": BadInput(lambda batch, _: _loop(batch), "symlink loop"),
    "symlink-to-itself": BadInput(lambda batch, _: _self_loop(batch / "me"), "symlink loop"),
    "symlink-outside-roots": BadInput(
        lambda batch, elsewhere: _link(batch / "escape.txt", elsewhere / "secret.txt"),
        "symlink leads outside the given roots",
    ),
    "broken-symlink": BadInput(
        lambda batch, elsewhere: _link(batch / "dangling.txt", elsewhere / "gone.txt", make=False),
        "broken symlink",
    ),
}


def _garbage(path: Path) -> Path:
    path.write_bytes(random_bytes(4096, seed=9))
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _loop(batch: Path) -> Path:
    (batch / "ping").symlink_to(batch / "pong")
    (batch / "pong").symlink_to(batch / "ping")
    return batch / "ping"


def _self_loop(link: Path) -> Path:
    link.symlink_to(link)
    return link


def _link(link: Path, target: Path, *, make: bool = True) -> Path:
    if make:
        target.write_text("not for this ingestion\n", encoding="utf-8")
    link.symlink_to(target)
    return link


def _batch_with(tmp_path: Path, good_folder: Path) -> Path:
    batch = tmp_path / "batch"
    shutil.copytree(good_folder, batch)
    (tmp_path / "elsewhere").mkdir()
    return batch


def _control(engine: Engine, good_folder: Path) -> set[bytes]:
    """The atoms of the good files alone, ingested by another tenant first."""
    control = ingest(engine, add_tenant(engine, "control"), good_folder)
    assert control.status == "completed"
    return atom_ids(engine)


def _assert_only_the_bad_file_failed(
    engine: Engine, good_atoms: set[bytes], tenant: str, failing: list[Path], reason: str
) -> None:
    with engine.connect() as connection:
        (job_status, file_count, failed_count) = connection.execute(
            select(
                ingestion_jobs.c.status, ingestion_jobs.c.file_count, ingestion_jobs.c.failed_count
            ).where(ingestion_jobs.c.tenant_id == tenant)
        ).one()
        rows = connection.execute(
            select(ingestion_job_atoms).where(ingestion_job_atoms.c.tenant_id == tenant)
        ).all()
        held = connection.execute(
            select(holdings.c.source_uri).where(holdings.c.tenant_id == tenant)
        ).scalars()
        held_names = sorted(uri.rsplit("/", 1)[-1] for uri in held)
    assert (job_status, failed_count) == ("completed_with_errors", len(failing))
    assert file_count == len(GOOD_FILES) + len(failing)
    failed_rows = [row for row in rows if row.status == "failed"]
    assert sorted(row.path for row in failed_rows) == sorted(str(path) for path in failing)
    for row in failed_rows:
        assert row.atom_id is None
        assert row.holding_id is None
        assert row.error.startswith(f"{row.path}: ")
        assert row.new_bytes == 0
        assert re.search(reason, row.error), row.error
    assert held_names == sorted(GOOD_FILES)
    # Nothing partial: not one atom beyond those of the good files.
    assert atom_ids(engine) == good_atoms
    assert_store_consistent(engine)


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_fails_alone(
    engine: Engine, tmp_path: Path, good_folder: Path, case: str
) -> None:
    bad = BAD_INPUTS[case]
    batch = _batch_with(tmp_path, good_folder)
    failing = bad.make(batch, tmp_path / "elsewhere")
    failing_paths = [failing] if case != "symlink-loop" else [batch / "ping", batch / "pong"]
    good_atoms = _control(engine, good_folder)
    tenant = add_tenant(engine, "acme")

    tracemalloc.start()
    try:
        outcome = ingest(engine, tenant, batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    files = by_name(outcome)
    for path in failing_paths:
        file = files[path.name]
        assert (file.status, file.atom_id, file.new_bytes) == ("failed", None, 0)
        assert file.error is not None
        assert str(path) in file.error
        assert re.search(bad.reason, file.error), file.error
    for name in GOOD_FILES:
        assert (files[name].status, files[name].error) == ("ingested", None)
        atom_id = files[name].atom_id
        assert atom_id is not None
        assert export(engine, atom_id) == (good_folder / name).read_bytes()
    assert outcome.new_bytes == 0  # the control run stored the good files' bytes already
    # A claimed header length is never allocated (nor is anything like it).
    assert peak < 32 * 1024 * 1024
    _assert_only_the_bad_file_failed(engine, good_atoms, tenant, failing_paths, bad.reason)


def test_every_bad_input_in_one_batch(engine: Engine, tmp_path: Path, good_folder: Path) -> None:
    batch = _batch_with(tmp_path, good_folder)
    failing: list[Path] = []
    for case, bad in BAD_INPUTS.items():
        folder = batch / case
        folder.mkdir()
        failing.append(bad.make(folder, tmp_path / "elsewhere"))
        if case == "symlink-loop":
            failing.append(folder / "pong")
    good_atoms = _control(engine, good_folder)
    tenant = add_tenant(engine, "acme")

    outcome = ingest(engine, tenant, batch)

    assert outcome.status == "completed_with_errors"
    statuses = {Path(file.path): file.status for file in outcome.files}
    assert {path for path, status in statuses.items() if status == "failed"} == set(failing)
    _assert_only_the_bad_file_failed(engine, good_atoms, tenant, failing, ".")


# --- unreadable files: permissions must apply even when the tests run as root --------------


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_CAPABILITY_VERSION_3 = 0x20080522
_FILE_PERMISSION_OVERRIDES = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


@contextmanager
def file_permissions_enforced() -> Iterator[None]:
    """Drop the capabilities that let root ignore file modes, for this thread only.

    Capabilities are per thread on Linux and stay permitted, so they are raised again after.
    Without root the effective set is already empty and this changes nothing.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()

    def call(function: Callable[..., int]) -> None:
        if function(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    call(libc.capget)
    saved = data[0].effective
    data[0].effective = saved & ~_FILE_PERMISSION_OVERRIDES
    call(libc.capset)
    try:
        yield
    finally:
        data[0].effective = saved
        call(libc.capset)


def test_unreadable_file_and_folder_fail(engine: Engine, tmp_path: Path, good_folder: Path) -> None:
    batch = _batch_with(tmp_path, good_folder)
    secret = batch / "secret.txt"
    secret.write_text("nobody may read this\n", encoding="utf-8")
    locked = batch / "locked"
    locked.mkdir()
    (locked / "inside.txt").write_text("nor this\n", encoding="utf-8")
    good_atoms = _control(engine, good_folder)
    tenant = add_tenant(engine, "acme")
    secret.chmod(0)
    locked.chmod(0)
    try:
        with file_permissions_enforced():
            with pytest.raises(PermissionError):
                secret.open("rb")
            outcome = ingest(engine, tenant, batch)
    finally:
        secret.chmod(0o644)
        locked.chmod(0o755)

    files = by_name(outcome)
    assert files["secret.txt"].status == "failed"
    assert files["secret.txt"].error == f"{secret}: Permission denied"
    assert files["locked"].status == "failed"
    assert files["locked"].error == f"{locked}: cannot list folder: Permission denied"
    assert "inside.txt" not in files
    _assert_only_the_bad_file_failed(engine, good_atoms, tenant, [locked, secret], "Permission")


def test_paths_that_do_not_exist_fail(engine: Engine, tmp_path: Path, good_folder: Path) -> None:
    good_atoms = _control(engine, good_folder)
    tenant = add_tenant(engine, "acme")
    missing = tmp_path / "missing.txt"

    outcome = ingest(engine, tenant, good_folder, missing)

    files = by_name(outcome)
    assert files["missing.txt"].error == f"{missing}: does not exist"
    _assert_only_the_bad_file_failed(engine, good_atoms, tenant, [missing], "does not exist")
