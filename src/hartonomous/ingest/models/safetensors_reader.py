"""Read safetensors files without trusting them.

Layout: an unsigned 64-bit little-endian header length N, N bytes of UTF-8 JSON, then the data
section. Each header entry gives a tensor's dtype, shape and ``data_offsets`` relative to the
data section. The header is parsed here rather than by the ``safetensors`` package so that the
claimed length is checked against a cap and the file size before anything is allocated.
Gaps between tensors are tolerated (the caller stores every byte anyway); overlaps are not.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from hartonomous.ingest.models.architecture import infer_architecture
from hartonomous.ingest.models.types import (
    ModelDescription,
    ModelFormatError,
    TensorInfo,
    check_spans,
    describe,
    element_count,
    file_order,
)
from hartonomous.json_types import JsonValue

# Same cap as the reference implementation: real headers are kilobytes to a few megabytes.
MAX_HEADER_LENGTH = 100_000_000
_PREFIX_LENGTH = 8

# Bits per element; the sub-byte float formats pack elements across byte boundaries.
_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
}

# Metadata keys that some exporters use to name the architecture. ``format`` is not one of them:
# it names the framework that wrote the file ("pt", "tf", "np").
_ARCHITECTURE_KEYS = ("architecture", "modelspec.architecture", "model_type")


def read_safetensors(path: Path) -> ModelDescription:
    """Describe a safetensors file; architecture comes from ``__metadata__`` or tensor names."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(_PREFIX_LENGTH)
        if len(prefix) < _PREFIX_LENGTH:
            raise ModelFormatError(
                f"file has {size} bytes, too short for the 8-byte safetensors header length"
            )
        (header_length,) = struct.unpack("<Q", prefix)
        _check_header_length(header_length, size)
        raw_header = handle.read(header_length)
    if len(raw_header) != header_length:
        raise ModelFormatError("file shrank while its safetensors header was being read")

    header = _parse_header(raw_header)
    data_start = _PREFIX_LENGTH + header_length
    data_size = size - data_start
    header_metadata = _header_metadata(header.pop("__metadata__", None))
    tensors = sorted(
        (_tensor(name, entry, data_start, data_size) for name, entry in header.items()),
        key=file_order,
    )
    check_spans(tensors, size)

    architecture = next(
        (header_metadata[key] for key in _ARCHITECTURE_KEYS if header_metadata.get(key)),
        None,
    ) or infer_architecture(tensor.name for tensor in tensors)
    metadata: dict[str, JsonValue] = {
        "header_length": header_length,
        "data_offset": data_start,
        "header_metadata": dict(header_metadata),
    }
    return describe("safetensors", architecture, metadata, tensors)


def _check_header_length(header_length: int, size: int) -> None:
    if header_length > MAX_HEADER_LENGTH:
        raise ModelFormatError(
            f"safetensors header claims {header_length} bytes, more than the "
            f"{MAX_HEADER_LENGTH}-byte limit"
        )
    available = size - _PREFIX_LENGTH
    if header_length > available:
        raise ModelFormatError(
            f"safetensors header claims {header_length} bytes but only {available} follow "
            "the length prefix (truncated?)"
        )


def _parse_header(raw: bytes) -> dict[str, object]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ModelFormatError(f"safetensors header is not valid UTF-8: {error}") from None
    if not text.startswith("{"):
        raise ModelFormatError("safetensors header does not start with a JSON object")
    try:
        header: object = json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as error:
        raise ModelFormatError(f"safetensors header is not valid JSON: {error}") from None
    except RecursionError:
        raise ModelFormatError("safetensors header JSON is nested too deeply") from None
    if not isinstance(header, dict):
        raise ModelFormatError("safetensors header is not a JSON object")
    return header


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads would silently keep the last duplicate; a header naming a tensor twice is corrupt.
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ModelFormatError(f"safetensors header repeats the key {key!r}")
        result[key] = value
    return result


def _reject_constant(constant: str) -> object:
    raise ModelFormatError(f"safetensors header contains the non-JSON constant {constant}")


def _header_metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise ModelFormatError("safetensors __metadata__ must map strings to strings")
    return value


def _is_index_list(value: object) -> bool:
    # bool is an int subclass in Python; JSON true/false is never a dimension or offset.
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    )


def _tensor(name: str, entry: object, data_start: int, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise ModelFormatError(f"tensor {name!r}: header entry is not a JSON object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPE_BITS:
        raise ModelFormatError(f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not _is_index_list(shape):
        raise ModelFormatError(f"tensor {name!r}: shape must be a list of non-negative integers")
    if not isinstance(offsets, list) or not _is_index_list(offsets) or len(offsets) != 2:
        raise ModelFormatError(
            f"tensor {name!r}: data_offsets must be [begin, end] with non-negative integers"
        )
    begin, end = offsets
    if begin > end:
        raise ModelFormatError(
            f"tensor {name!r}: data_offsets [{begin}, {end}] end before they begin"
        )
    if end > data_size:
        raise ModelFormatError(
            f"tensor {name!r}: data_offsets end at {end} but the data section has "
            f"{data_size} bytes (truncated?)"
        )
    count = element_count(shape)
    bits = count * _DTYPE_BITS[dtype]
    if bits % 8 != 0:
        raise ModelFormatError(
            f"tensor {name!r}: {dtype} with shape {shape} is {bits} bits, not whole bytes"
        )
    if bits // 8 != end - begin:
        raise ModelFormatError(
            f"tensor {name!r}: {dtype} with shape {shape} needs {bits // 8} bytes but "
            f"data_offsets [{begin}, {end}] hold {end - begin}"
        )
    return TensorInfo(
        name=name,
        dtype=dtype.lower(),
        shape=tuple(shape),
        offset=data_start + begin,
        length=end - begin,
        parameter_count=count,
        metadata={"data_offsets": [begin, end]},
    )
