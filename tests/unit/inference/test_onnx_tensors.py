"""`onnx_run`'s tensors: inline JSON and `.npy` inputs, checks against a model's inputs, and
output descriptions."""

from __future__ import annotations

import io
import pickle
from decimal import Decimal

import numpy as np
import pytest

from hartonomous.inference.tasks import InferenceInputError
from hartonomous.inference.tensors import (
    INLINE_VALUES_LIMIT,
    TensorSpec,
    check_inputs,
    describe_output,
    npy_bytes,
    tensor_from_json,
    tensor_from_npy,
)
from hartonomous.json_types import JsonValue


def _npy(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=allow_pickle)
    return stream.getvalue()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"dtype": "float32", "shape": [1, 2], "data": [[1.5, 2]]}, np.array([[1.5, 2]], "f4")),
        ({"dtype": "int64", "shape": [3], "data": [1, 2, 3]}, np.array([1, 2, 3], "i8")),
        ({"dtype": "int64", "shape": [2], "data": [1.0, 2.0]}, np.array([1, 2], "i8")),
        ({"dtype": "float64", "shape": [], "data": 2.5}, np.array(2.5)),
        ({"dtype": "bool", "shape": [2], "data": [True, False]}, np.array([True, False])),
        ({"dtype": "string", "shape": [2], "data": ["a", "bc"]}, np.array(["a", "bc"])),
        ({"dtype": "float32", "shape": [0, 4], "data": []}, np.zeros((0, 4), "f4")),
        (
            {"dtype": "float32", "shape": [2], "data": [Decimal("0.5"), Decimal("1")]},
            np.array([0.5, 1.0], "f4"),
        ),
    ],
    ids=["float", "int", "whole-floats-as-int", "scalar", "bool", "string", "empty", "decimal"],
)
def test_inline_tensors(value: dict[str, JsonValue], expected: np.ndarray) -> None:
    array = tensor_from_json("x", value)

    assert array.dtype == expected.dtype
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"dtype": "complex64", "shape": [1], "data": [1]}, r"dtype 'complex64' is not one of"),
        ({"dtype": "float32", "shape": [-1], "data": [1]}, r"shape must be a list of non-neg"),
        ({"dtype": "float32", "shape": [1], "data": [1], "x": 1}, r"exactly the fields"),
        ({"dtype": "float32", "shape": [2, 2], "data": [[1, 2], [3]]}, r"data is ragged"),
        ({"dtype": "float32", "shape": [2], "data": ["1", "2"]}, r"needs numbers, not text"),
        ({"dtype": "float32", "shape": [2], "data": [1, "a"]}, r"needs numbers, not text"),
        ({"dtype": "int64", "shape": [1], "data": [1.5]}, r"needs whole numbers"),
        ({"dtype": "uint8", "shape": [1], "data": [300]}, r"values do not fit uint8"),
        ({"dtype": "int8", "shape": [1], "data": [-129]}, r"values do not fit int8"),
        ({"dtype": "bool", "shape": [1], "data": [1]}, r"dtype bool needs true/false"),
        ({"dtype": "float32", "shape": [1], "data": [True]}, r"needs numbers, not true/false"),
        ({"dtype": "string", "shape": [1], "data": [1]}, r"dtype string needs text"),
        ({"dtype": "float32", "shape": [3], "data": [1, 2]}, r"data has shape \[2\], shape \[3\]"),
        ({"dtype": "string", "shape": [2], "data": ["a", 1]}, r"dtype string needs text"),
        ({"dtype": "float32", "shape": [1], "data": [1e39]}, r"values too large for float32"),
        ({"dtype": "float16", "shape": [1], "data": [70000]}, r"values too large for float16"),
        (
            {"dtype": "float32", "shape": [0] * 65, "data": []},
            r"shape has 65 dimensions, at most 64",
        ),
        (
            {"dtype": "float32", "shape": [1] * 64, "data": [[[1]]]},
            r"data has shape \[1, 1, 1\], shape \[1, 1, 1, .*\] declared",
        ),
    ],
    ids=[
        "dtype",
        "shape",
        "fields",
        "ragged",
        "text",
        "mixed",
        "fraction",
        "uint8-range",
        "int8-range",
        "bool",
        "bool-as-number",
        "string",
        "declared-shape",
        "number-as-string",
        "float32-overflow",
        "float16-overflow",
        "too-many-dimensions",
        "deep-shape-shallow-data",
    ],
)
def test_inline_tensors_refused(value: dict[str, JsonValue], message: str) -> None:
    with pytest.raises(InferenceInputError, match=rf"^input 'x': .*{message}"):
        tensor_from_json("x", value)


def test_npy_round_trip_and_refusals() -> None:
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(tensor_from_npy("x", npy_bytes(array)), array)
    text = np.array(["a", "bcd"])
    assert tensor_from_npy("x", npy_bytes(text.astype(object))).tolist() == ["a", "bcd"]

    refusals = {
        b"1 2 3\n": "are not a .npy array",
        pickle.dumps(array): "are not a .npy array",
        _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True): "unreadable .npy array",
        _npy(array)[:-4]: "unreadable .npy array",
        _npy(array) + b"\x00": "1 bytes follow the .npy array",
        _npy(np.array([1 + 2j])): "dtype complex128 is not one of",
    }
    for data, message in refusals.items():
        with pytest.raises(InferenceInputError, match=rf"^input 'x': .*{message}"):
            tensor_from_npy("x", data)


@pytest.mark.parametrize("dtype", [">f4", ">i8", ">f8", "<f4"])
def test_npy_in_either_byte_order_reaches_the_model_as_its_values(dtype: str) -> None:
    """onnxruntime reads bytes as they lie: a big-endian array once ran as garbage."""
    values = np.array([[1, 2], [3, 4], [5, 7]], dtype=dtype)
    read = tensor_from_npy("X", _npy(values))
    assert read.dtype.isnative
    assert read.dtype == values.dtype.newbyteorder("=")
    np.testing.assert_array_equal(read, values)


_X = TensorSpec("x", "tensor(float)", ("batch", 4))
_SCALE = TensorSpec("scale", "tensor(float)", (1,))


def test_inputs_checked_against_the_model() -> None:
    ok = np.zeros((7, 4), np.float32)
    check_inputs([_X], [_SCALE], {"x": ok})
    check_inputs([_X], [_SCALE], {"x": ok, "scale": np.ones(1, np.float32)})
    check_inputs([TensorSpec("x", "tensor(float)", None)], [], {"x": np.zeros((2, 2, 2), "f4")})
    check_inputs([TensorSpec("x", "tensor(float)", (None, None))], [], {"x": ok})

    cases = [
        ({"x": ok, "y": ok}, r"^input 'y': the model has no such input \('x'\)$"),
        ({}, r"^missing input 'x' required by the model$"),
        ({"x": ok.astype(np.float16)}, r"^input 'x': dtype float16 given, float32 expected$"),
        ({"x": np.zeros((7, 3), "f4")}, r"shape \[7, 3\] given, \[batch, 4\] expected$"),
        ({"x": np.zeros((4,), "f4")}, r"shape \[4\] given, \[batch, 4\] expected$"),
        ({"x": ok, "scale": np.ones(2, "f4")}, r"'scale': shape \[2\] given, \[1\] expected$"),
    ]
    for given, message in cases:
        with pytest.raises(InferenceInputError, match=message):
            check_inputs([_X], [_SCALE], given)
    with pytest.raises(InferenceInputError, match=r"shape \[2, 3\] given, \[None, 4\] expected"):
        check_inputs(
            [TensorSpec("x", "tensor(float)", (None, 4))], [], {"x": np.ones((2, 3), "f4")}
        )
    with pytest.raises(InferenceInputError, match=r"takes seq\(tensor\(float\)\)"):
        check_inputs([TensorSpec("x", "seq(tensor(float))", None)], [], {"x": ok})


def test_outputs_described_with_small_values_inline() -> None:
    small = np.array([[0.5, np.nan], [np.inf, -np.inf]], dtype=np.float32)
    large = np.zeros(INLINE_VALUES_LIMIT + 1, dtype=np.int64)

    assert describe_output("y", small) == {
        "name": "y",
        "dtype": "float32",
        "shape": [2, 2],
        "values": [[0.5, "NaN"], ["Infinity", "-Infinity"]],
    }
    assert describe_output("z", large) == {
        "name": "z",
        "dtype": "int64",
        "shape": [INLINE_VALUES_LIMIT + 1],
    }
    assert describe_output("s", np.array(["a"], dtype=object))["values"] == ["a"]
