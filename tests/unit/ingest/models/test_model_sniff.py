"""Format detection and dispatch for model files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from gguf import GGUFWriter
from onnx import TensorProto, helper
from safetensors.numpy import save_file

from hartonomous.ingest.models import ModelFormatError, read_model, sniff_model_format


def _safetensors(path: Path) -> Path:
    save_file({"w": np.ones(3, dtype=np.float32)}, str(path))
    return path


def _gguf(path: Path) -> Path:
    writer = GGUFWriter(path, "llama")
    writer.add_tensor("w", np.ones(3, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _onnx(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_recognises_each_format_by_content(tmp_path: Path) -> None:
    # Misleading names: content wins for the formats that have a recognisable start.
    safetensors_path = _safetensors(tmp_path / "weights.bin")
    gguf_path = _gguf(tmp_path / "weights.dat")
    onnx_path = _onnx(tmp_path / "graph.onnx")

    assert sniff_model_format(safetensors_path) == "safetensors"
    assert sniff_model_format(gguf_path) == "gguf"
    assert sniff_model_format(onnx_path) == "onnx"
    assert read_model(safetensors_path).format == "safetensors"
    assert read_model(gguf_path).format == "gguf"
    assert read_model(onnx_path).format == "onnx"


def test_gguf_magic_wins_over_extension(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "model.onnx")

    assert sniff_model_format(path) == "gguf"


def test_onnx_content_without_extension_is_not_recognised(tmp_path: Path) -> None:
    path = _onnx(tmp_path / "graph.pb")

    assert sniff_model_format(path) is None


@pytest.mark.parametrize("suffix", [".safetensors", ".gguf", ".onnx", ".ONNX"])
def test_empty_file_with_model_extension_is_claimed_and_fails(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")

    assert sniff_model_format(path) == suffix.lower().lstrip(".")
    with pytest.raises(ModelFormatError):
        read_model(path)


def test_safetensors_with_huge_claimed_header_is_still_recognised(tmp_path: Path) -> None:
    path = tmp_path / "weights"
    path.write_bytes(struct.pack("<Q", 2**60) + b'{"w": {}}')

    assert sniff_model_format(path) == "safetensors"
    with pytest.raises(ModelFormatError, match="limit"):
        read_model(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello world, just text\n", b"\x00" * 100, b"12345678{ not json", b"PK\x03\x04zip"],
    ids=["empty", "text", "zeros", "brace-then-text", "zip"],
)
def test_other_files_are_not_models(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(content)

    assert sniff_model_format(path) is None
    with pytest.raises(ModelFormatError, match="not a safetensors, GGUF or ONNX model file"):
        read_model(path)
