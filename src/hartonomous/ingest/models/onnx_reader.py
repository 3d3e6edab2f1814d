"""Read ONNX models with the ``onnx`` package and find each initializer's raw bytes in the file.

The protobuf library does not say where a field's bytes sit in the encoded message, so the file's
wire format is walked along ModelProto.graph (field 7) -> GraphProto.initializer (field 5) ->
TensorProto.raw_data (field 9). Each span found is compared byte for byte with the parsed
initializer before it is reported; anything that does not match gets no offset rather than a
wrong one. Initializers held in typed repeated fields (float_data, int64_data, ...) or in external
files have no raw span in this file. The whole file is read into memory, as ``onnx.load`` would,
and the checker reads it once more by path.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx
import onnx.checker

# protobuf ships no type hints; the stubs package is not a dependency of this project.
from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from onnx import ModelProto, TensorProto, TypeProto, ValueInfoProto

from hartonomous.ingest.models.architecture import infer_architecture
from hartonomous.ingest.models.types import (
    ModelDescription,
    ModelFormatError,
    TensorInfo,
    describe,
    element_count,
)
from hartonomous.json_types import JsonValue

# ONNX element type -> (normalized name, bits per element); strings have no fixed width.
_DTYPES: dict[int, tuple[str, int | None]] = {
    TensorProto.FLOAT: ("f32", 32),
    TensorProto.UINT8: ("u8", 8),
    TensorProto.INT8: ("i8", 8),
    TensorProto.UINT16: ("u16", 16),
    TensorProto.INT16: ("i16", 16),
    TensorProto.INT32: ("i32", 32),
    TensorProto.INT64: ("i64", 64),
    TensorProto.STRING: ("string", None),
    TensorProto.BOOL: ("bool", 8),
    TensorProto.FLOAT16: ("f16", 16),
    TensorProto.DOUBLE: ("f64", 64),
    TensorProto.UINT32: ("u32", 32),
    TensorProto.UINT64: ("u64", 64),
    TensorProto.COMPLEX64: ("c64", 64),
    TensorProto.COMPLEX128: ("c128", 128),
    TensorProto.BFLOAT16: ("bf16", 16),
    TensorProto.FLOAT8E4M3FN: ("f8_e4m3fn", 8),
    TensorProto.FLOAT8E4M3FNUZ: ("f8_e4m3fnuz", 8),
    TensorProto.FLOAT8E5M2: ("f8_e5m2", 8),
    TensorProto.FLOAT8E5M2FNUZ: ("f8_e5m2fnuz", 8),
    TensorProto.UINT4: ("u4", 4),
    TensorProto.INT4: ("i4", 4),
    TensorProto.FLOAT4E2M1: ("f4_e2m1", 4),
}

# Graph names that exporters use by default; they say nothing about the architecture.
_DEFAULT_GRAPH_NAMES = frozenset({"", "main_graph", "torch_jit", "torch-jit-export", "tf2onnx"})
_ARCHITECTURE_PROPS = ("architecture", "model_type")

# Protobuf field numbers and wire types used by the span walk.
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_NAME = 8
_TENSOR_RAW_DATA = 9
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def read_onnx(path: Path) -> ModelDescription:
    """Describe an ONNX model.

    Architecture: the ``architecture`` or ``model_type`` metadata property, else the family
    recognised from initializer names, else the graph name unless it is an exporter's default.
    """
    data = path.read_bytes()
    if not data:
        raise ModelFormatError("file is empty")
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError as error:
        raise ModelFormatError(f"not a valid ONNX protobuf: {error}") from None
    relaxed = _check(path, model)

    spans = _raw_data_spans(data)
    initializers = model.graph.initializer
    if spans is not None and len(spans) != len(initializers):
        spans = None
    tensors = [
        _tensor(initializer, data, spans[index] if spans is not None else None)
        for index, initializer in enumerate(initializers)
    ]
    metadata = _model_metadata(model)
    if relaxed is not None:
        metadata["checker_relaxed"] = relaxed
    return describe("onnx", _architecture(model, tensors), metadata, tensors)


# IR 3 required every initializer to be listed among the graph's inputs; IR 4 dropped the rule.
# Exporters of the time did not always list them (onnxruntime's own `mul_1.onnx`), and
# onnxruntime runs such models; they are checked as IR 4 would check them, and say so.
_IR3_INITIALIZER_RULE = "in initializer but not in graph input"


def _check(path: Path, model: ModelProto) -> str | None:
    """Run the ONNX checker; None, or the rule relaxed to accept the model.

    Raises ``ModelFormatError`` with the checker's first line when the model is invalid."""
    try:
        # Checking by path resolves external data files against the model's own directory;
        # checking the parsed model would resolve them against the working directory.
        onnx.checker.check_model(path)
    except onnx.checker.ValidationError as error:
        if not (model.ir_version < 4 and _IR3_INITIALIZER_RULE in str(error)):
            raise _rejected(error) from None
        as_ir4 = ModelProto()
        as_ir4.CopyFrom(model)
        as_ir4.ir_version = 4
        try:
            onnx.checker.check_model(as_ir4)
        except onnx.checker.ValidationError as other:
            raise _rejected(other) from None  # what is wrong beyond the relaxed rule
        return "IR 3 initializers not listed as graph inputs: checked as IR 4"
    return None


def _rejected(error: onnx.checker.ValidationError) -> ModelFormatError:
    reason = next((line for line in str(error).splitlines() if line.strip()), "invalid")
    return ModelFormatError(f"ONNX checker rejected the model: {reason}")


def _architecture(model: ModelProto, tensors: Sequence[TensorInfo]) -> str | None:
    props = {str(prop.key): str(prop.value) for prop in model.metadata_props}
    for key in _ARCHITECTURE_PROPS:
        if props.get(key):
            return props[key]
    inferred = infer_architecture(tensor.name for tensor in tensors)
    if inferred is not None:
        return inferred
    name = model.graph.name
    return None if name in _DEFAULT_GRAPH_NAMES else name


def _dtype(data_type: int) -> tuple[str, int | None]:
    if data_type in _DTYPES:
        return _DTYPES[data_type]
    # Element types newer than this table keep ONNX's own name rather than failing the read.
    try:
        return TensorProto.DataType.Name(data_type).lower(), None
    except ValueError:
        return f"onnx_type_{data_type}", None


def _tensor(initializer: TensorProto, data: bytes, span: tuple[str, int, int] | None) -> TensorInfo:
    dtype, bits = _dtype(initializer.data_type)
    shape = tuple(int(dim) for dim in initializer.dims)
    count = element_count(shape)
    logical_length = math.ceil(count * bits / 8) if bits is not None else 0
    metadata: dict[str, JsonValue] = {}
    offset: int | None = None
    length = logical_length
    if initializer.data_location == TensorProto.EXTERNAL:
        external = {entry.key: entry.value for entry in initializer.external_data}
        metadata = {"storage": "external", "external_data": dict(external)}
    elif raw_data := initializer.raw_data:
        raw_length = len(raw_data)
        if bits is not None and raw_length != logical_length:
            raise ModelFormatError(
                f"initializer {initializer.name!r}: raw_data holds {raw_length} bytes but "
                f"{dtype} with shape {list(shape)} needs {logical_length}"
            )
        metadata = {"storage": "raw_data"}
        length = raw_length
        offset = _verified_offset(initializer.name, raw_data, data, span)
    else:
        metadata = {"storage": "typed_fields"}
    return TensorInfo(
        name=initializer.name,
        dtype=dtype,
        shape=shape,
        offset=offset,
        length=length,
        parameter_count=count,
        metadata=metadata,
    )


def _verified_offset(
    name: str, raw_data: bytes, data: bytes, span: tuple[str, int, int] | None
) -> int | None:
    # Only a span whose name and bytes match the parsed initializer is trusted.
    if span is None:
        return None
    span_name, start, end = span
    if span_name != name or memoryview(data)[start:end] != raw_data:
        return None
    return start


def _model_metadata(model: ModelProto) -> dict[str, JsonValue]:
    graph = model.graph
    initializer_names = {initializer.name for initializer in graph.initializer}
    op_types = Counter(
        node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        for node in graph.node
    )
    return {
        "ir_version": model.ir_version,
        "opset_imports": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        "producer_name": model.producer_name,
        "producer_version": model.producer_version,
        "domain": model.domain,
        "model_version": model.model_version,
        "doc_string": model.doc_string,
        "graph_name": graph.name,
        "metadata_props": {prop.key: prop.value for prop in model.metadata_props},
        # Before IR version 4 initializers were also listed as inputs; they are not fed by callers.
        "inputs": [_value_info(v) for v in graph.input if v.name not in initializer_names],
        "outputs": [_value_info(v) for v in graph.output],
        "node_count": len(graph.node),
        "op_types": dict(sorted(op_types.items())),
        "initializer_count": len(graph.initializer),
        "sparse_initializer_count": len(graph.sparse_initializer),
    }


def _value_info(value: ValueInfoProto) -> dict[str, JsonValue]:
    kind = value.type.WhichOneof("value")
    if kind == "tensor_type":
        return {"name": value.name, "kind": "tensor", **_tensor_type(value.type.tensor_type)}
    if kind == "sparse_tensor_type":
        return {
            "name": value.name,
            "kind": "sparse_tensor",
            **_tensor_type(value.type.sparse_tensor_type),
        }
    return {"name": value.name, "kind": kind}


def _tensor_type(tensor_type: TypeProto.Tensor | TypeProto.SparseTensor) -> dict[str, JsonValue]:
    shape: list[JsonValue] | None = None
    if tensor_type.HasField("shape"):
        # A dimension is a fixed size, a symbolic name such as "batch", or unknown.
        shape = [
            dim.dim_value
            if dim.HasField("dim_value")
            else dim.dim_param
            if dim.HasField("dim_param")
            else None
            for dim in tensor_type.shape.dim
        ]
    return {"dtype": _dtype(tensor_type.elem_type)[0], "shape": shape}


class _WireError(Exception):
    """The bytes do not follow the protobuf wire format the walk expects."""


def _raw_data_spans(data: bytes) -> list[tuple[str, int, int]] | None:
    """(name, start, end) of every top-level initializer's raw_data, in initializer order.

    Protobuf merges repeated occurrences of a message field, so initializers from every graph
    field are concatenated; within a TensorProto the last occurrence of a scalar field wins.
    Initializers without raw_data get an empty span, which never verifies.
    """
    spans: list[tuple[str, int, int]] = []
    try:
        for number, wire_type, start, end in _fields(data, 0, len(data)):
            if number != _MODEL_GRAPH or wire_type != _LENGTH_DELIMITED:
                continue
            for g_number, g_wire_type, g_start, g_end in _fields(data, start, end):
                if g_number == _GRAPH_INITIALIZER and g_wire_type == _LENGTH_DELIMITED:
                    spans.append(_tensor_span(data, g_start, g_end))
    except (_WireError, UnicodeDecodeError):
        return None
    return spans


def _tensor_span(data: bytes, start: int, end: int) -> tuple[str, int, int]:
    name = ""
    raw_start = raw_end = start
    for number, wire_type, value_start, value_end in _fields(data, start, end):
        if wire_type != _LENGTH_DELIMITED:
            continue
        if number == _TENSOR_NAME:
            name = data[value_start:value_end].decode("utf-8")
        elif number == _TENSOR_RAW_DATA:
            raw_start, raw_end = value_start, value_end
    return name, raw_start, raw_end


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, wire type, value start, value end) for each field in [start, end)."""
    position = start
    while position < end:
        key, position = _varint(data, position, end)
        wire_type = key & 7
        if wire_type == _VARINT:
            value_start = position
            _, value_end = _varint(data, position, end)
        elif wire_type == _FIXED64:
            value_start, value_end = position, position + 8
        elif wire_type == _LENGTH_DELIMITED:
            length, value_start = _varint(data, position, end)
            value_end = value_start + length
        elif wire_type == _FIXED32:
            value_start, value_end = position, position + 4
        else:
            # Groups (wire types 3 and 4) are deprecated and never written by ONNX.
            raise _WireError(f"unsupported wire type {wire_type}")
        if value_end > end:
            raise _WireError("field runs past its enclosing message")
        yield key >> 3, wire_type, value_start, value_end
        position = value_end


def _varint(data: bytes, position: int, end: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if position >= end:
            break
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
    raise _WireError("malformed varint")
