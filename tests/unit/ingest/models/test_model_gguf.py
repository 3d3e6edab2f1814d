"""GGUF reader against files written by ``gguf.GGUFWriter`` and hand-made corrupt headers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFEndian, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize

from hartonomous.ingest.models import ModelFormatError, read_model
from hartonomous.ingest.models.gguf_reader import read_gguf

_RNG = np.random.default_rng(7)
_EMBEDDINGS = _RNG.standard_normal((8, 64)).astype(np.float32)
_NORM = np.ones(64, dtype=np.float16)
_PROJECTION = _RNG.standard_normal((4, 64)).astype(np.float32)
_TOKENS = [f"token{i}" for i in range(100)]


def _write_model(path: Path) -> Path:
    writer = GGUFWriter(path, "llama")
    writer.add_uint32("llama.block_count", 1)
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_float32("test.not_a_number", float("nan"))
    writer.add_string("general.name", "tiny")
    writer.add_array("tokenizer.ggml.tokens", _TOKENS)
    writer.add_array("tokenizer.ggml.token_type", [1, 2, 3])
    writer.add_tensor("token_embd.weight", _EMBEDDINGS)
    writer.add_tensor("output_norm.weight", _NORM)
    writer.add_tensor(
        "output.weight",
        quantize(_PROJECTION, GGMLQuantizationType.Q8_0),
        raw_dtype=GGMLQuantizationType.Q8_0,
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return _write_model(tmp_path / "tiny.gguf")


def test_reads_tensors_and_metadata(model_path: Path) -> None:
    description = read_model(model_path)

    assert description.format == "gguf"
    assert description.architecture == "llama"
    assert [t.name for t in description.tensors] == [
        "token_embd.weight",
        "output_norm.weight",
        "output.weight",
    ]
    embeddings, norm, projection = description.tensors
    assert (embeddings.dtype, embeddings.shape, embeddings.metadata["ggml_dims"]) == (
        "f32",
        (8, 64),
        [64, 8],
    )
    assert (norm.dtype, norm.shape) == ("f16", (64,))
    assert (projection.dtype, projection.shape, projection.parameter_count) == (
        "q8_0",
        (4, 64),
        256,
    )
    # Q8_0 stores 32 values per 34-byte block (a float16 scale and 32 int8s).
    assert projection.length == 256 // 32 * 34
    assert description.parameter_count == 8 * 64 + 64 + 4 * 64
    assert description.dtypes == {"f16": 1, "f32": 1, "q8_0": 1}

    raw = model_path.read_bytes()
    expected = {
        "token_embd.weight": _EMBEDDINGS.tobytes(),
        "output_norm.weight": _NORM.tobytes(),
        "output.weight": quantize(_PROJECTION, GGMLQuantizationType.Q8_0).tobytes(),
    }
    alignment = description.metadata["alignment"]
    for tensor in description.tensors:
        assert tensor.offset is not None
        assert tensor.offset % alignment == 0
        assert raw[tensor.offset : tensor.offset + tensor.length] == expected[tensor.name]

    metadata = description.metadata
    assert metadata["version"] == 3
    assert metadata["byte_order"] == "little"
    assert metadata["data_offset"] == GGUFReader(model_path).data_offset
    key_values = metadata["key_values"]
    assert key_values["general.architecture"] == "llama"
    assert key_values["general.name"] == "tiny"
    assert key_values["llama.block_count"] == 1
    assert key_values["llama.rope.freq_base"] == 10000.0
    assert key_values["tokenizer.ggml.add_bos_token"] is True
    assert key_values["tokenizer.ggml.token_type"] == [1, 2, 3]
    assert key_values["test.not_a_number"] == "nan"
    # Long arrays such as a vocabulary are summarised, not copied.
    assert key_values["tokenizer.ggml.tokens"] == {
        "array_of": "string",
        "length": 100,
        "head": _TOKENS[:8],
    }
    json.dumps(metadata, allow_nan=False)


def test_rejects_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")

    with pytest.raises(ModelFormatError, match="empty"):
        read_model(path)


@pytest.mark.parametrize("keep", [6, 30, 200], ids=["in-magic-version", "in-counts", "in-kv"])
def test_rejects_file_cut_in_header(model_path: Path, keep: int) -> None:
    model_path.write_bytes(model_path.read_bytes()[:keep])

    with pytest.raises(ModelFormatError, match="truncated"):
        read_model(model_path)


def test_rejects_file_cut_in_tensor_data(model_path: Path) -> None:
    # The writer pads after the last tensor too, so cut well inside its 272 bytes.
    model_path.write_bytes(model_path.read_bytes()[:-100])

    with pytest.raises(ModelFormatError, match=r"tensor 'output\.weight' data ends .*truncated"):
        read_model(model_path)


def test_rejects_overlapping_tensors(model_path: Path) -> None:
    # Point the second tensor at the first one's bytes, editing the file through GGUFReader.
    editor = GGUFReader(model_path, "r+")
    editor.tensors[1].field.parts[5][0] = 0
    editor.data.flush()
    del editor

    with pytest.raises(ModelFormatError, match="overlaps"):
        read_model(model_path)


def _header(version: int = 3, tensors: int = 0, kvs: int = 1) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def _key(name: str) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(
            # GGUFReader itself would loop for ever over this claimed array length.
            _header() + _key("a") + struct.pack("<IIQ", GGUFValueType.ARRAY, 0, 2**40) + bytes(16),
            "truncated",
            id="huge-array-length",
        ),
        pytest.param(
            _header()
            + _key("a")
            + struct.pack("<IIQ", GGUFValueType.ARRAY, GGUFValueType.STRING, 2**40)
            + bytes(16),
            "truncated",
            id="huge-string-array",
        ),
        pytest.param(
            _header() + struct.pack("<Q", 2**60) + b"abc", "truncated", id="huge-key-length"
        ),
        pytest.param(
            _header() + _key("a") + struct.pack("<I", 99), "unknown value type", id="type"
        ),
        pytest.param(_header(version=1), "version 1 is not supported", id="version"),
        pytest.param(
            _header(tensors=1, kvs=0) + _key("t") + struct.pack("<IQIQ", 1, 32, 99, 0),
            "unknown GGML type 99",
            id="tensor-type",
        ),
        pytest.param(
            _header() + _key("general.alignment") + struct.pack("<II", GGUFValueType.UINT32, 3),
            "not a power of two",
            id="alignment",
        ),
        pytest.param(
            _header(tensors=1, kvs=0)
            + _key("t")
            + struct.pack("<IQIQ", 1, 33, GGMLQuantizationType.Q8_0, 0),
            "not a multiple",
            id="partial-block",
        ),
        pytest.param(
            _header(tensors=2, kvs=0)
            + (_key("t") + struct.pack("<IQIQ", 1, 1, GGMLQuantizationType.F32, 0)) * 2
            + bytes(64),
            "appears twice",
            id="duplicate-tensor",
        ),
        pytest.param(
            _header() + _key("a") + struct.pack("<IQ", GGUFValueType.STRING, 2) + b"\xff\xfe",
            "not UTF-8",
            id="metadata-not-utf8",
        ),
    ],
)
def test_rejects_corrupt_header(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(content)

    with pytest.raises(ModelFormatError, match=reason):
        read_gguf(path)


def test_reads_big_endian_file(tmp_path: Path) -> None:
    path = tmp_path / "big.gguf"
    writer = GGUFWriter(path, "llama", endianess=GGUFEndian.BIG)
    writer.add_uint32("llama.block_count", 2)
    writer.add_tensor("token_embd.weight", _EMBEDDINGS)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    description = read_model(path)

    assert description.metadata["byte_order"] == "big"
    assert description.metadata["key_values"]["llama.block_count"] == 2
    (tensor,) = description.tensors
    assert (tensor.shape, tensor.length) == ((8, 64), _EMBEDDINGS.nbytes)
    assert tensor.offset is not None
    stored = path.read_bytes()[tensor.offset : tensor.offset + tensor.length]
    assert stored == _EMBEDDINGS.astype(">f4").tobytes()
