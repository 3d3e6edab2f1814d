"""The tensors of `onnx_run`: reading a request's inputs (inline JSON or `.npy` bytes), checking
them against what a model expects, and describing and encoding its outputs (docs/inference.md,
"onnx_run").

Pure functions over numpy arrays: no database, no runtime. Element types are named as numpy
names them (``float32``, ``int64``, ``bool``) plus ``string``; onnxruntime's names
(``tensor(float)``) map onto them. The `.npy` format is numpy's own (``numpy.lib.format``,
version 1.0 to 3.0); object arrays, which need pickle, are refused.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from hartonomous.inference.tasks import InferenceInputError
from hartonomous.json_types import JsonValue
from hartonomous.storable import storable_json

__all__ = [
    "DTYPES",
    "INLINE_VALUES_LIMIT",
    "MAX_DIMENSIONS",
    "NPY_MEDIA_TYPE",
    "Array",
    "Dim",
    "TensorSpec",
    "check_inputs",
    "describe_output",
    "dtype_name",
    "element_bytes",
    "npy_bytes",
    "shape_text",
    "tensor_from_json",
    "tensor_from_npy",
]

Array = npt.NDArray[np.generic]
# A dimension as a model declares it: a fixed size, a symbolic name ("batch") or unknown.
Dim = int | str | None

NPY_MEDIA_TYPE = "application/x-npy"
# Outputs of at most this many elements also carry their values in the output JSON.
INLINE_VALUES_LIMIT = 256
# The most dimensions a numpy array has (NPY_MAXDIMS, numpy 2).
MAX_DIMENSIONS = 64

# onnxruntime's element type names -> the names inputs and outputs are described with.
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}
DTYPES = frozenset(_ORT_DTYPES.values())
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output a model declares: ``type`` as onnxruntime names it
    (``tensor(float)``, ``seq(map(int64,tensor(float)))``); ``shape`` None when the model
    declares none (any shape is accepted)."""

    name: str
    type: str
    shape: tuple[Dim, ...] | None

    @property
    def dtype(self) -> str | None:
        """The element type's name (``float32``), None for a type that is not a plain tensor
        of a supported element type."""
        return _ORT_DTYPES.get(self.type)


def dtype_name(array: Array) -> str:
    """``float32``, ``int64``, ``bool``, ... or ``string`` for text."""
    return "string" if array.dtype.kind in "UO" else array.dtype.name


def shape_text(shape: Sequence[Dim]) -> str:
    """``[2, 3]``; symbolic dimensions by name (``[batch, 4]``), unknown ones as ``None``."""
    return "[" + ", ".join("None" if dim is None else str(dim) for dim in shape) + "]"


def tensor_from_json(name: str, value: Mapping[str, JsonValue]) -> Array:
    """An inline tensor ``{"dtype": "float32", "shape": [1, 4], "data": [[...]]}``.

    ``data`` is nested lists whose nesting is ``shape`` (a bare number for shape ``[]``; ``[]``
    for any shape with no elements).
    Raises ``InferenceInputError`` for an unknown dtype, a malformed shape or one of more than
    ``MAX_DIMENSIONS``, ragged data, data whose shape is not the declared one, or values the
    dtype cannot hold exactly (text for a number, a number for text, 1.5 for an integer, 300
    for uint8, 1e39 for float32).
    """
    if set(value) != {"dtype", "shape", "data"}:
        raise InferenceInputError(
            f"input {name!r}: an inline tensor has exactly the fields dtype, shape and data; "
            f"given {sorted(value)}"
        )
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise InferenceInputError(
            f"input {name!r}: dtype {dtype!r} is not one of {', '.join(sorted(DTYPES))}"
        )
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape
    ):
        raise InferenceInputError(
            f"input {name!r}: shape must be a list of non-negative integers, given {shape!r}"
        )
    if len(shape) > MAX_DIMENSIONS:
        raise InferenceInputError(
            f"input {name!r}: shape has {len(shape)} dimensions, at most {MAX_DIMENSIONS}"
        )
    declared = tuple(int(dim) for dim in shape if isinstance(dim, int))
    try:
        natural = np.asarray(data)
    except ValueError:
        raise InferenceInputError(
            f"input {name!r}: data is ragged (its lists are not all the same length) or "
            f"nested deeper than {MAX_DIMENSIONS} levels"
        ) from None
    array = _as_dtype(name, natural, dtype, data)
    if array.size == 0 and math.prod(declared) == 0:
        # JSON writes every empty tensor as []: its declared shape ([0, 4]) says which it is.
        array = array.reshape(declared)
    if array.shape != declared:
        raise InferenceInputError(
            f"input {name!r}: data has shape {shape_text(array.shape)}, "
            f"shape {shape_text(declared)} declared"
        )
    return array


def _as_dtype(name: str, natural: Array, dtype: str, data: JsonValue) -> Array:
    """``data`` (read by numpy as ``natural``) as ``dtype``, refusing lossy or silent casts."""
    kind = natural.dtype.kind
    if dtype == "string":
        # numpy reads ["a", 1] as text ("1"): every value must be text already.
        if natural.size and (
            kind != "U" or not all(isinstance(item, str) for item in _leaves(data))
        ):
            raise InferenceInputError(f"input {name!r}: dtype string needs text values")
        return natural.astype(np.str_)
    if kind in "UO" and not (kind == "O" and _all_numbers(natural)):
        raise InferenceInputError(f"input {name!r}: dtype {dtype} needs numbers, not text")
    target = np.dtype(dtype)
    if (target.kind == "b") != (kind == "b") and natural.size:
        wanted = "true/false values" if target.kind == "b" else "numbers, not true/false"
        raise InferenceInputError(f"input {name!r}: dtype {dtype} needs {wanted}")
    try:
        with np.errstate(over="ignore"):  # an overflow is refused below, by its result
            array = np.asarray(data, dtype=target)
    except (OverflowError, ValueError, TypeError) as error:
        raise InferenceInputError(f"input {name!r}: values do not fit {dtype}: {error}") from None
    if target.kind == "f" and array.size and not np.all(np.isfinite(array)):
        # JSON holds no infinity: a non-finite value here is one too large for the dtype
        # (1e39 as float32), which numpy casts to infinity with only a warning.
        raise InferenceInputError(f"input {name!r}: values too large for {dtype}")
    if target.kind in "iu":
        if kind in {"f", "O"}:
            exact = np.asarray(data, dtype=np.float64)
            if not np.array_equal(exact, array):
                raise InferenceInputError(
                    f"input {name!r}: dtype {dtype} needs whole numbers within its range"
                )
        elif kind in "iu" and not np.array_equal(natural, array):
            raise InferenceInputError(f"input {name!r}: values out of the range of {dtype}")
    return array


def _leaves(data: JsonValue) -> Iterator[JsonValue]:
    """The values of nested lists, depth first."""
    if isinstance(data, list):
        for item in data:
            yield from _leaves(item)
    else:
        yield data


def _all_numbers(natural: Array) -> bool:
    # An object array comes from exact JSON decoding (Decimal) or from mixed or ragged data.
    return all(
        isinstance(item, int | float | Decimal) and not isinstance(item, bool)
        for item in natural.reshape(-1)
    )


def tensor_from_npy(name: str, data: bytes) -> Array:
    """A tensor from `.npy` bytes. Raises ``InferenceInputError`` when the bytes are not one
    `.npy` array (an `.npz` archive, a pickle, text) or hold an object array."""
    if not data.startswith(_NPY_MAGIC):
        raise InferenceInputError(
            f"input {name!r}: the bytes are not a .npy array (they do not start with \\x93NUMPY)"
        )
    stream = io.BytesIO(data)
    try:
        array = np.lib.format.read_array(stream, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise InferenceInputError(f"input {name!r}: unreadable .npy array: {error}") from None
    if stream.tell() != len(data):
        raise InferenceInputError(
            f"input {name!r}: {len(data) - stream.tell()} bytes follow the .npy array"
        )
    if dtype_name(array) not in DTYPES:
        raise InferenceInputError(
            f"input {name!r}: .npy dtype {array.dtype} is not one of {', '.join(sorted(DTYPES))}"
        )
    if not array.dtype.isnative:
        # onnxruntime reads the bytes as they lie: a big-endian float32 gave garbage values.
        array = array.astype(array.dtype.newbyteorder("="))
    return np.asarray(array)


def check_inputs(
    expected: Sequence[TensorSpec],
    optional: Sequence[TensorSpec],
    given: Mapping[str, Array],
) -> None:
    """Check ``given`` against the model's ``expected`` inputs (all required) and the
    ``optional`` ones (initializers a caller may override).

    Raises ``InferenceInputError`` naming the first mismatch: an unknown name, a missing input,
    a dtype or a shape other than the model's (symbolic and unknown dimensions accept any size;
    the message gives both shapes).
    """
    specs = {spec.name: spec for spec in (*expected, *optional)}
    for name in given:
        if name not in specs:
            known = ", ".join(repr(spec.name) for spec in expected) or "none"
            raise InferenceInputError(f"input {name!r}: the model has no such input ({known})")
    missing = [spec.name for spec in expected if spec.name not in given]
    if missing:
        raise InferenceInputError(
            "missing input " + ", ".join(repr(name) for name in missing) + " required by the model"
        )
    for name, array in given.items():
        _check_input(specs[name], array)


def _check_input(spec: TensorSpec, array: Array) -> None:
    if spec.dtype is None:
        raise InferenceInputError(f"input {spec.name!r}: the model takes {spec.type}, not given")
    if dtype_name(array) != spec.dtype:
        raise InferenceInputError(
            f"input {spec.name!r}: dtype {dtype_name(array)} given, {spec.dtype} expected"
        )
    if spec.shape is None:
        return
    fits = len(array.shape) == len(spec.shape) and all(
        not isinstance(dim, int) or dim == size
        for dim, size in zip(spec.shape, array.shape, strict=True)
    )
    if not fits:
        raise InferenceInputError(
            f"input {spec.name!r}: shape {shape_text(array.shape)} given, "
            f"{shape_text(spec.shape)} expected"
        )


def npy_bytes(array: Array) -> bytes:
    """The array as `.npy` bytes (text as fixed-width unicode, never pickled objects)."""
    if array.dtype.kind == "O":
        array = array.astype(np.str_)
    stream = io.BytesIO()
    np.lib.format.write_array(stream, array, allow_pickle=False)
    return stream.getvalue()


def describe_output(name: str, array: Array) -> dict[str, JsonValue]:
    """``{"name", "dtype", "shape"}`` and, for at most ``INLINE_VALUES_LIMIT`` elements,
    ``"values"`` as nested lists (NaN and the infinities as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``, which JSON cannot hold as numbers)."""
    described: dict[str, JsonValue] = {
        "name": name,
        "dtype": dtype_name(array),
        "shape": [int(dim) for dim in array.shape],
    }
    if array.size <= INLINE_VALUES_LIMIT:
        values = array.astype(np.str_) if array.dtype.kind == "O" else array
        described["values"] = storable_json(values.tolist())
    return described


def element_bytes(array: Array) -> int:
    """Bytes the array's elements take (text: its UTF-8 length), for the input size limit."""
    if array.dtype.kind in "UO":
        return sum(len(str(item).encode()) for item in array.reshape(-1))
    return int(array.nbytes)
