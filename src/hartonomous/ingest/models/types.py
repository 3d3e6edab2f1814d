"""Format-neutral description of a model file, shared by the safetensors, GGUF and ONNX readers."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hartonomous.json_types import JsonValue


class ModelFormatError(ValueError):
    """The file is not a well-formed model of the format it claims to be.

    The message names the problem only; the caller knows the path and prefixes it.
    """


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a model file.

    ``offset``/``length`` give the tensor's raw bytes as an absolute byte span of the file, so the
    caller can store the span as its own atom. ``offset`` is None when the bytes are not one
    contiguous raw span (ONNX typed repeated fields or external data); ``length`` is then the
    tensor's logical byte size when the dtype has a fixed width, else 0.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int | None
    length: int
    parameter_count: int
    metadata: Mapping[str, JsonValue]


@dataclass(frozen=True)
class ModelDescription:
    """What a reader learned from one model file. ``tensors`` are listed in file order."""

    format: str
    architecture: str | None
    metadata: Mapping[str, JsonValue]
    tensors: Sequence[TensorInfo]
    parameter_count: int
    dtypes: Mapping[str, int]


def element_count(shape: Sequence[int]) -> int:
    """Number of elements of a tensor; a scalar (empty shape) has one."""
    return math.prod(shape)


def describe(
    fmt: str,
    architecture: str | None,
    metadata: Mapping[str, JsonValue],
    tensors: Sequence[TensorInfo],
) -> ModelDescription:
    """Build the description, deriving the totals from the tensors so they cannot disagree."""
    dtypes = Counter(tensor.dtype for tensor in tensors)
    return ModelDescription(
        format=fmt,
        architecture=architecture,
        metadata=metadata,
        tensors=tuple(tensors),
        parameter_count=sum(tensor.parameter_count for tensor in tensors),
        dtypes=dict(sorted(dtypes.items())),
    )


def file_order(tensor: TensorInfo) -> tuple[int, str]:
    """Sort key putting tensors in the order their bytes appear; unplaced tensors first."""
    return (-1 if tensor.offset is None else tensor.offset, tensor.name)


def check_spans(tensors: Sequence[TensorInfo], file_size: int) -> None:
    """Reject tensor byte spans that leave the file or overlap one another.

    The caller stores the file as the tensors' spans plus the bytes between them, so a span past
    the end (a truncated file) or two spans sharing bytes would make that tiling impossible.
    Empty tensors occupy no bytes and cannot overlap anything.
    """
    spans = sorted(
        (t.offset, t.offset + t.length, t.name)
        for t in tensors
        if t.offset is not None and t.length > 0
    )
    previous: tuple[int, int, str] | None = None
    for start, end, name in spans:
        if start < 0 or end > file_size:
            raise ModelFormatError(
                f"tensor {name!r} occupies bytes [{start}, {end}) but the file has "
                f"{file_size} bytes (truncated?)"
            )
        if previous is not None and start < previous[1]:
            raise ModelFormatError(
                f"tensor {name!r} at bytes [{start}, {end}) overlaps tensor "
                f"{previous[2]!r} at bytes [{previous[0]}, {previous[1]})"
            )
        previous = (start, end, name)
