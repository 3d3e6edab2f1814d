"""ComponentStream version 1: layout, run merging, round trips and strict decoding."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest

from hartonomous.atoms.component_stream import (
    MAX_REPEAT,
    ComponentStreamError,
    Run,
    component_stream_from_base64,
    component_stream_to_base64,
    decode_component_stream,
    encode_component_stream,
    merge_runs,
    runs_from_children,
    total_components,
)


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


A, B, C = digest("a"), digest("b"), digest("c")


def header(run_count: int, *, is_null: int = 0, version: int = 1) -> bytes:
    return struct.pack("<Bii", is_null, version, run_count)


def run_bytes(child: bytes, repeat: int) -> bytes:
    return child + struct.pack("<i", repeat)


def test_layout_matches_digest_section_7_2() -> None:
    # isNull byte, int32 version, int32 runCount, then (32-byte child, int32 repeat) per run,
    # all little-endian like .NET's BinaryWriter.
    encoded = encode_component_stream([(A, 2), (B, 1)])
    assert encoded == (
        b"\x00" + b"\x01\x00\x00\x00" + b"\x02\x00\x00\x00"
        + A + b"\x02\x00\x00\x00"
        + B + b"\x01\x00\x00\x00"
    )  # fmt: skip
    assert len(encoded) == 9 + 2 * 36


def test_reference_merge_example() -> None:
    # The digest's test: (101,1), (101,2), (25001,3), (98765,1), (98765,4)
    # encode to runs (101,3), (25001,3), (98765,5); integer ids become digests here.
    ids = {n: digest(str(n)) for n in (101, 25001, 98765)}
    descriptors = [(101, 1), (101, 2), (25001, 3), (98765, 1), (98765, 4)]
    encoded = encode_component_stream((ids[n], q) for n, q in descriptors)
    assert decode_component_stream(encoded) == (
        Run(ids[101], 3),
        Run(ids[25001], 3),
        Run(ids[98765], 5),
    )
    assert component_stream_from_base64(component_stream_to_base64(encoded)) == (
        decode_component_stream(encoded)
    )


def test_runs_from_children_and_totals() -> None:
    runs = runs_from_children([A, A, B, A, C, C, C])
    assert runs == (Run(A, 2), Run(B, 1), Run(A, 1), Run(C, 3))
    assert total_components(runs) == 7
    assert decode_component_stream(encode_component_stream(runs)) == runs


def test_round_trip_many_runs() -> None:
    runs = tuple(Run(digest(str(i)), i % 7 + 1) for i in range(5000))
    encoded = encode_component_stream(runs)
    assert decode_component_stream(encoded) == runs
    assert decode_component_stream(memoryview(encoded)) == runs
    assert decode_component_stream(bytearray(encoded)) == runs


def test_max_repeat_round_trips_and_overflow_is_rejected() -> None:
    assert decode_component_stream(encode_component_stream([(A, MAX_REPEAT)])) == (
        Run(A, MAX_REPEAT),
    )
    with pytest.raises(ComponentStreamError, match="repeat"):
        merge_runs([(A, MAX_REPEAT), (A, 1)])


@pytest.mark.parametrize(
    ("child", "repeat"),
    [(b"short", 1), (A + b"x", 1), (A, 0), (A, -3), (A, MAX_REPEAT + 1)],
)
def test_invalid_runs_rejected(child: bytes, repeat: int) -> None:
    with pytest.raises(ComponentStreamError):
        Run(child, repeat)


def test_empty_stream_cannot_be_encoded() -> None:
    with pytest.raises(ComponentStreamError, match="at least one run"):
        encode_component_stream([])


def test_error_is_a_value_error() -> None:
    assert issubclass(ComponentStreamError, ValueError)


VALID = encode_component_stream([(A, 1), (B, 2)])


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "truncated"),
        (b"\x00\x01\x00", "truncated"),
        (b"\x01", "null marker"),
        (header(1, is_null=1) + run_bytes(A, 1), "null marker"),
        (header(1, is_null=2) + run_bytes(A, 1), "isNull"),
        (header(1, version=2) + run_bytes(A, 1), "version 2"),
        (header(0), "run count"),
        (header(-1), "run count"),
        (VALID[:-1], "truncated"),
        (VALID[:20], "truncated"),
        (VALID + b"\x00", "trailing"),
        (header(1) + run_bytes(A, 0), "repeat"),
        (header(1) + run_bytes(A, -1), "repeat"),
        (header(2) + run_bytes(A, 1) + run_bytes(A, 1), "same child"),
    ],
    ids=[
        "empty",
        "short-header",
        "null-marker",
        "null-flag",
        "bad-flag",
        "version",
        "zero-runs",
        "negative-runs",
        "missing-byte",
        "mid-run",
        "trailing-byte",
        "zero-repeat",
        "negative-repeat",
        "unmerged",
    ],
)
def test_corrupt_input_rejected(data: bytes, problem: str) -> None:
    with pytest.raises(ComponentStreamError, match=problem):
        decode_component_stream(data)


def test_forged_run_count_does_not_allocate() -> None:
    # A count of 2**31-1 would claim ~77 GB; it must fail on the length check, not on memory.
    with pytest.raises(ComponentStreamError, match="truncated"):
        decode_component_stream(header(2**31 - 1) + run_bytes(A, 1))


def test_invalid_base64_rejected() -> None:
    with pytest.raises(ComponentStreamError, match="Base64"):
        component_stream_from_base64("not base64!")
    with pytest.raises(ComponentStreamError, match="Base64"):
        component_stream_from_base64("é")
    with pytest.raises(ComponentStreamError, match="truncated"):
        component_stream_from_base64(base64.b64encode(VALID[:-4]).decode())
