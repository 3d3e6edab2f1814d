"""Read GGUF files (the llama.cpp format) with the ``gguf`` package, after a bounds-checked scan.

``gguf.GGUFReader`` trusts the file: a scalar array that claims more elements than the file holds
makes it loop over empty slices for as long as the claim says (2**40 elements never finishes), and
a truncated data section surfaces as a numpy reshape error. ``_scan`` walks the same layout first,
checking every length against the file size before using it, so such files fail quickly with a
reason; only then does GGUFReader decode the values.

Layout: magic ``GGUF``, version, tensor count, metadata count, the metadata key/value pairs, the
tensor infos (name, dims, type, offset relative to the data section), padding to the alignment,
then the data section.
"""

from __future__ import annotations

import math
import mmap
import struct
import sys
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType, ReaderField
from gguf.constants import GGUF_DEFAULT_ALIGNMENT

from hartonomous.ingest.models.sniff import GGUF_MAGIC
from hartonomous.ingest.models.types import (
    ModelDescription,
    ModelFormatError,
    TensorInfo,
    check_spans,
    describe,
    file_order,
)
from hartonomous.json_types import JsonValue

_SUPPORTED_VERSIONS = (2, 3)
_SCALAR_SIZES: dict[int, int] = {
    GGUFValueType.UINT8: 1,
    GGUFValueType.INT8: 1,
    GGUFValueType.BOOL: 1,
    GGUFValueType.UINT16: 2,
    GGUFValueType.INT16: 2,
    GGUFValueType.UINT32: 4,
    GGUFValueType.INT32: 4,
    GGUFValueType.FLOAT32: 4,
    GGUFValueType.UINT64: 8,
    GGUFValueType.INT64: 8,
    GGUFValueType.FLOAT64: 8,
}
# Smallest encoding of one array element of these types: an empty string is its u64 length,
# an empty array its u32 item type and u64 count.
_MIN_ELEMENT_SIZES: dict[int, int] = {GGUFValueType.STRING: 8, GGUFValueType.ARRAY: 12}
_MAX_ARRAY_DEPTH = 8

# Metadata summaries: arrays such as the tokenizer vocabulary hold 10**5 entries and strings such
# as an embedded tokenizer.json megabytes; ``models show`` needs their shape, not their contents.
_ARRAY_LIMIT = 64
_ARRAY_HEAD = 8
_STRING_LIMIT = 16_384
_STRING_HEAD = 256


def read_gguf(path: Path) -> ModelDescription:
    """Describe a GGUF file; architecture is ``general.architecture`` when present.

    Shapes are reported outermost dimension first like the other formats (GGUF stores them
    innermost first); ``ggml_dims`` in each tensor's metadata keeps the stored order.
    """
    _scan(path)
    try:
        reader = GGUFReader(path)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as error:
        raise ModelFormatError(f"gguf could not parse the file: {error}") from None

    tensors = sorted(
        (
            TensorInfo(
                name=tensor.name,
                dtype=tensor.tensor_type.name.lower(),
                shape=tuple(int(dim) for dim in reversed(tensor.shape.tolist())),
                offset=int(tensor.data_offset),
                length=int(tensor.n_bytes),
                parameter_count=int(tensor.n_elements),
                metadata={"ggml_dims": [int(dim) for dim in tensor.shape.tolist()]},
            )
            for tensor in reader.tensors
        ),
        key=file_order,
    )
    check_spans(tensors, path.stat().st_size)

    key_values = {
        name: _field_value(name, field)
        for name, field in reader.fields.items()
        # GGUFReader lists the file header (version and counts) as pseudo-fields.
        if not name.startswith("GGUF.")
    }
    architecture = key_values.get("general.architecture")
    metadata: dict[str, JsonValue] = {
        "version": _field_value("GGUF.version", reader.fields["GGUF.version"]),
        "byte_order": _byte_order(reader),
        "alignment": int(reader.alignment),
        "data_offset": int(reader.data_offset),
        "key_values": key_values,
    }
    return describe(
        "gguf",
        architecture if isinstance(architecture, str) and architecture else None,
        metadata,
        tensors,
    )


def _byte_order(reader: GGUFReader) -> str:
    # "I" means the file matches this machine, "S" that it is byte-swapped.
    host_is_little = sys.byteorder == "little"
    file_is_little = host_is_little if reader.byte_order == "I" else not host_is_little
    return "little" if file_is_little else "big"


def _field_value(name: str, field: ReaderField) -> JsonValue:
    try:
        if field.types and field.types[0] == GGUFValueType.ARRAY:
            return _array_value(field)
        return _scalar_value(field.contents())
    except UnicodeDecodeError:
        raise ModelFormatError(f"metadata key {name!r} holds a string that is not UTF-8") from None


def _array_value(field: ReaderField) -> JsonValue:
    # types is [ARRAY, item type, ...]; an empty array records no item type at all.
    item_type = field.types[1] if len(field.types) > 1 else None
    if item_type == GGUFValueType.ARRAY:
        # GGUFReader flattens nested arrays, so their element count is not recoverable here.
        return {"array_of": "array"}
    length = len(field.data)
    if length <= _ARRAY_LIMIT:
        return [_scalar_value(item) for item in field.contents()]
    return {
        "array_of": item_type.name.lower() if item_type is not None else None,
        "length": length,
        "head": [_scalar_value(item) for item in field.contents(slice(0, _ARRAY_HEAD))],
    }


def _scalar_value(value: object) -> JsonValue:
    if isinstance(value, str):
        if len(value) <= _STRING_LIMIT:
            return value
        return {"string_length": len(value), "head": value[:_STRING_HEAD]}
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or infinity; keep the value readable instead of dropping it.
        return str(value)
    if isinstance(value, bool | int | float):
        return value
    raise ModelFormatError(f"unexpected metadata value of type {type(value).__name__}")


def _scan(path: Path) -> None:
    size = path.stat().st_size
    if size == 0:
        raise ModelFormatError("file is empty")
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        _HeaderScan(buf, size).run()


class _HeaderScan:
    """Walk the GGUF header, checking every claimed length against the bytes that remain."""

    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self._buf = buf
        self._size = size
        self._pos = 0
        self._order = "<"

    def run(self) -> None:
        if self._take(4, "GGUF magic") != GGUF_MAGIC:
            raise ModelFormatError("file does not start with the GGUF magic")
        version = self._u32("GGUF version")
        if version & 0xFFFF == 0:
            # A big-endian file reads as a huge little-endian number with zero low bits.
            self._order = ">"
            version = struct.unpack(">I", struct.pack("<I", version))[0]
        if version not in _SUPPORTED_VERSIONS:
            raise ModelFormatError(f"GGUF version {version} is not supported (only 2 and 3)")
        tensor_count = self._u64("tensor count")
        kv_count = self._u64("metadata count")
        alignment = GGUF_DEFAULT_ALIGNMENT
        for index in range(kv_count):
            key = self._text(f"metadata key #{index}")
            value_type = self._u32(f"type of metadata {key!r}")
            if key == "general.alignment":
                alignment = self._alignment(value_type)
            else:
                self._skip_value(value_type, f"metadata {key!r}", 0)
        tensors = [self._tensor_info(index) for index in range(tensor_count)]
        data_offset = -(-self._pos // alignment) * alignment
        self._check_tensor_data(tensors, data_offset)

    def _alignment(self, value_type: int) -> int:
        if value_type != GGUFValueType.UINT32:
            raise ModelFormatError("metadata 'general.alignment' must be a uint32")
        alignment = self._u32("metadata 'general.alignment'")
        if alignment == 0 or alignment & (alignment - 1):
            raise ModelFormatError(f"general.alignment {alignment} is not a power of two")
        return alignment

    def _tensor_info(self, index: int) -> tuple[str, list[int], GGMLQuantizationType, int]:
        name = self._text(f"name of tensor #{index}")
        n_dims = self._u32(f"dimension count of tensor {name!r}")
        raw_dims = self._take(8 * n_dims, f"dimensions of tensor {name!r}")
        dims = list(struct.unpack(f"{self._order}{n_dims}Q", raw_dims))
        raw_type = self._u32(f"type of tensor {name!r}")
        if raw_type not in GGML_QUANT_SIZES:
            raise ModelFormatError(f"tensor {name!r} has unknown GGML type {raw_type}")
        relative_offset = self._u64(f"offset of tensor {name!r}")
        return name, dims, GGMLQuantizationType(raw_type), relative_offset

    def _check_tensor_data(
        self, tensors: list[tuple[str, list[int], GGMLQuantizationType, int]], data_offset: int
    ) -> None:
        seen: set[str] = set()
        for name, dims, ggml_type, relative_offset in tensors:
            if name in seen:
                raise ModelFormatError(f"tensor name {name!r} appears twice")
            seen.add(name)
            block_size, type_size = GGML_QUANT_SIZES[ggml_type]
            elements = math.prod(dims)
            if elements % block_size:
                raise ModelFormatError(
                    f"tensor {name!r} has {elements} elements, not a multiple of the "
                    f"{block_size}-element block of its type"
                )
            end = data_offset + relative_offset + elements // block_size * type_size
            if end > self._size:
                raise ModelFormatError(
                    f"tensor {name!r} data ends at byte {end} but the file has "
                    f"{self._size} bytes (truncated?)"
                )

    def _skip_value(self, value_type: int, what: str, depth: int) -> None:
        if value_type in _SCALAR_SIZES:
            self._skip(_SCALAR_SIZES[value_type], what)
        elif value_type == GGUFValueType.STRING:
            self._skip(self._u64(f"length of {what}"), what)
        elif value_type == GGUFValueType.ARRAY:
            if depth >= _MAX_ARRAY_DEPTH:
                raise ModelFormatError(f"{what} nests arrays more than {_MAX_ARRAY_DEPTH} deep")
            item_type = self._u32(f"item type of {what}")
            count = self._u64(f"length of {what}")
            if item_type in _SCALAR_SIZES:
                self._skip(count * _SCALAR_SIZES[item_type], what)
                return
            if item_type not in _MIN_ELEMENT_SIZES:
                raise ModelFormatError(f"{what} has unknown array item type {item_type}")
            self._require(count * _MIN_ELEMENT_SIZES[item_type], what)
            for _ in range(count):
                self._skip_value(item_type, what, depth + 1)
        else:
            raise ModelFormatError(f"{what} has unknown value type {value_type}")

    def _require(self, length: int, what: str) -> None:
        remaining = self._size - self._pos
        if length > remaining:
            raise ModelFormatError(
                f"{what} needs {length} bytes at offset {self._pos} but only {remaining} "
                "remain (truncated?)"
            )

    def _skip(self, length: int, what: str) -> None:
        self._require(length, what)
        self._pos += length

    def _take(self, length: int, what: str) -> bytes:
        start = self._pos
        self._skip(length, what)
        return self._buf[start : self._pos]

    def _u32(self, what: str) -> int:
        value: int = struct.unpack(f"{self._order}I", self._take(4, what))[0]
        return value

    def _u64(self, what: str) -> int:
        value: int = struct.unpack(f"{self._order}Q", self._take(8, what))[0]
        return value

    def _text(self, what: str) -> str:
        try:
            return self._take(self._u64(f"length of {what}"), what).decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFormatError(f"{what} is not UTF-8") from None
