"""Reading untrusted AtomicStream bytes: every defect is one AtomicStreamError naming its offset.

Offsets below are counted from the layout in docs/provenance.md for ``valid_bytes()``:
0 isNull, 1 version, 5 stream id, 21 created ticks, 29 scope flag, 30 scope length,
31 scope text (5 bytes), 36 model flag, 37 metadata flag, 38 segment count;
segment 0: 42 kind, 43 timestamp, 51 content-type flag, 52 length, 53 text (10 bytes),
63 metadata flag, 64 payload length, 68 payload (3 bytes);
segment 1: 71 kind, 72 timestamp, 80 content-type flag, 81 metadata flag, 82 length,
83 text (12 bytes), 95 payload length, 99 payload (20 bytes), 119 the end.
"""

from __future__ import annotations

import random
import struct
import uuid
from datetime import UTC, datetime

import pytest

from hartonomous.errors import UsageError
from hartonomous.provenance import (
    AtomicStream,
    AtomicStreamError,
    SegmentKind,
    read_atomic_stream,
    write_atomic_stream,
)

WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SEGMENT_0 = 42


def valid_stream() -> AtomicStream:
    return (
        AtomicStream.create(uuid.UUID(int=0x1234), created=WHEN, scope="scope")
        .with_segment("input", b"abc", timestamp=WHEN, content_type="text/plain")
        .with_segment("output", b"\x00" * 20, timestamp=WHEN, metadata='{"tokens":3}')
    )


def valid_bytes() -> bytes:
    return valid_stream().to_bytes()


def patched(offset: int, replacement: bytes, *, cut: int | None = None) -> bytes:
    """valid_bytes() with ``replacement`` written at ``offset`` (replacing ``cut`` bytes)."""
    data = valid_bytes()
    end = offset + (len(replacement) if cut is None else cut)
    return data[:offset] + replacement + data[end:]


def refuse(data: bytes, offset: int, fragment: str) -> AtomicStreamError:
    with pytest.raises(AtomicStreamError) as caught:
        read_atomic_stream(data)
    error = caught.value
    assert error.offset == offset, str(error)
    assert fragment in str(error)
    assert str(error).startswith(f"AtomicStream byte {offset}: ")
    return error


def test_the_offsets_in_this_file_match_the_layout() -> None:
    data = valid_bytes()
    assert data[29:36] == b"\x01\x05scope"
    assert data[SEGMENT_0] == SegmentKind.Input
    assert data[51:63] == b"\x01\x0atext/plain"
    assert data[64:71] == struct.pack("<i", 3) + b"abc"
    assert data[71] == SegmentKind.Output
    assert data[80:83] == b"\x00\x01\x0c"
    assert data[95:99] == struct.pack("<i", 20)
    assert len(data) == 119


def test_the_error_is_a_usage_error_with_a_stable_code() -> None:
    error = refuse(b"", 0, "expected the isNull flag (bool, 1 byte), but only 0 bytes remain")
    assert isinstance(error, UsageError)
    assert (error.code, error.exit_code, error.http_status) == ("invalid-atomic-stream", 2, 400)


@pytest.mark.parametrize("flag", [2, 0x80, 0xFF])
def test_a_flag_byte_other_than_0_or_1_is_refused(flag: int) -> None:
    refuse(patched(0, bytes([flag])), 0, f"isNull flag as a bool byte 0 or 1, got {flag}")
    refuse(
        patched(29, bytes([flag])), 29, f"the scope presence flag as a bool byte 0 or 1, got {flag}"
    )
    refuse(patched(63, bytes([flag])), 63, "segment 0 metadata presence flag as a bool byte")


@pytest.mark.parametrize("version", [0, 2, -1, 0x01000000])
def test_a_version_other_than_1_is_refused(version: int) -> None:
    refuse(patched(1, struct.pack("<i", version)), 1, f"expected format version 1, got {version}")


@pytest.mark.parametrize(
    ("end", "offset", "fragment"),
    [
        (1, 1, "the format version (int32, 4 bytes), but only 0 bytes remain"),
        (3, 1, "the format version (int32, 4 bytes), but only 2 bytes remain"),
        (20, 5, "the stream id (GUID, 16 bytes), but only 15 bytes remain"),
        (28, 21, "the creation time (int64, 8 bytes), but only 7 bytes remain"),
        (30, 30, "the scope length (byte 1 of a 7-bit length)"),
        (33, 31, "the scope (5 bytes of UTF-8), but only 2 bytes remain"),
        (40, 38, "the segment count (int32, 4 bytes)"),
        # Inside segment 0 the declared count of 2 no longer fits the bytes left.
        (42, 38, "a segment count of at most 0 (a segment takes 15 bytes or more, and 0 remain)"),
        (70, 38, "a segment count of at most 1 (a segment takes 15 bytes or more, and 28 remain)"),
        (75, 72, "segment 1 timestamp (int64, 8 bytes), but only 3 bytes remain"),
        (82, 82, "segment 1 metadata length (byte 1 of a 7-bit length)"),
        (90, 83, "segment 1 metadata (12 bytes of UTF-8), but only 7 bytes remain"),
        (97, 95, "segment 1 payload length (int32, 4 bytes), but only 2 bytes remain"),
    ],
)
def test_truncation_names_the_field_that_ran_out(end: int, offset: int, fragment: str) -> None:
    refuse(valid_bytes()[:end], offset, fragment)


def test_truncated_in_the_last_payload_byte() -> None:
    data = valid_bytes()
    refuse(data[:-1], len(data) - 20, "segment 1 payload (20 bytes), but only 19 bytes remain")


def test_trailing_bytes_are_refused() -> None:
    data = valid_bytes()
    refuse(data + b"\x00", len(data), "expected the end after segment 1, but 1 byte remains")
    refuse(b"\x01\x00\x00", 1, "expected the end after the null value, but 2 bytes remain")


def test_a_negative_segment_count_is_refused() -> None:
    refuse(patched(38, struct.pack("<i", -1)), 38, "expected a segment count >= 0, got -1")


@pytest.mark.parametrize("count", [6, 1000, 2**31 - 1])
def test_a_segment_count_beyond_the_bytes_is_refused_before_allocating(count: int) -> None:
    # The two real segments take 77 bytes: room for at most 5 of the smallest (15 bytes).
    refuse(patched(38, struct.pack("<i", count)), 38, "count of at most 5 (a segment takes 15")


@pytest.mark.parametrize("count", [3, 5])
def test_a_segment_count_within_the_bytes_fails_where_segments_run_out(count: int) -> None:
    refuse(patched(38, struct.pack("<i", count)), 119, "expected segment 2 kind (1 byte)")


@pytest.mark.parametrize("length", [21, 2**20, 2**31 - 1])
def test_a_payload_length_beyond_the_bytes_is_refused(length: int) -> None:
    data = valid_bytes()
    last_length_at = len(data) - 24
    refuse(
        patched(last_length_at, struct.pack("<i", length)),
        last_length_at + 4,
        f"expected segment 1 payload ({length} bytes), but only 20 bytes remain",
    )


@pytest.mark.parametrize("length", [-1, -(2**31)])
def test_a_negative_payload_length_reads_as_empty(length: int) -> None:
    # The original treats a negative length as 0 (and so reads no payload bytes after it).
    one = AtomicStream.create(uuid.UUID(int=7), created=WHEN).with_segment(
        "input", b"", timestamp=WHEN
    )
    data = bytearray(one.to_bytes())
    data[-4:] = struct.pack("<i", length)
    assert AtomicStream.from_bytes(data) == one


@pytest.mark.parametrize(
    ("varint", "offset", "fragment"),
    [
        # int32 max is a valid length, but longer than the data
        (b"\xff\xff\xff\xff\x07", 35, "the scope (2147483647 bytes of UTF-8), but only"),
        (b"\x80\x80\x80\x80\x08", 30, "a length in 0..2147483647, got 2147483648"),
        (b"\xff\xff\xff\xff\x0f", 30, "a length in 0..2147483647, got 4294967295"),
        (b"\x80\x80\x80\x80\x80\x01", 30, "at most 5 bytes, but its fifth byte still has"),
    ],
)
def test_string_lengths_are_checked(varint: bytes, offset: int, fragment: str) -> None:
    refuse(patched(30, varint, cut=1), offset, fragment)


@pytest.mark.parametrize(
    ("text", "bad_at"),
    [(b"\xc3\x28ope", 0), (b"sc\xffpe", 2), (b"sco\xed\xa0", 3), (b"scop\xe2", 4)],
)
def test_invalid_utf8_is_refused_at_the_bad_byte(text: bytes, bad_at: int) -> None:
    # \xed\xa0 starts an encoded surrogate; \xe2 is a sequence cut short by the length.
    refuse(patched(31, text), 31 + bad_at, "expected the scope as UTF-8, but byte")


@pytest.mark.parametrize("kind", [8, 0x7F, 0xFF])
def test_an_unknown_kind_byte_is_refused(kind: int) -> None:
    refuse(patched(SEGMENT_0, bytes([kind])), SEGMENT_0, f"kind as a byte in 0..7, got {kind}")


@pytest.mark.parametrize("ticks", [-1, 3_155_378_976_000_000_000, 2**63 - 1])
def test_ticks_outside_dotnet_datetime_are_refused(ticks: int) -> None:
    refuse(patched(21, struct.pack("<q", ticks)), 21, "the creation time as ticks in 0..")
    refuse(patched(43, struct.pack("<q", ticks)), 43, "segment 0 timestamp as ticks in 0..")


def test_the_nil_stream_id_is_refused() -> None:
    refuse(patched(5, bytes(16)), 5, "expected a stream id, got the nil GUID")


def test_every_truncation_is_refused() -> None:
    data = valid_bytes()
    for end in range(len(data)):
        with pytest.raises(AtomicStreamError):
            read_atomic_stream(data[:end])


def read_outcome(data: bytes) -> AtomicStream | AtomicStreamError | None:
    """The stream (None for the null form) or the AtomicStreamError; anything else escapes."""
    try:
        return read_atomic_stream(data)
    except AtomicStreamError as error:
        return error


def test_random_corruption_gives_a_stream_or_the_one_error() -> None:
    # Property: whatever bytes come in, the reader answers a stream that writes back to bytes
    # it reads again as the same stream, or raises AtomicStreamError with an offset inside the
    # input; nothing else escapes. Seeded, so a failure reproduces.
    data = valid_bytes()
    rng = random.Random(20261130)  # noqa: S311 (test data, not secrets)
    outcomes = {"stream": 0, "error": 0}
    for _ in range(3000):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            action, position = rng.random(), rng.randrange(len(mutated))
            if action < 0.7:
                mutated[position] = rng.randrange(256)
            elif action < 0.85:
                del mutated[position]
            else:
                mutated.insert(position, rng.randrange(256))
        if rng.random() < 0.3:
            del mutated[rng.randrange(len(mutated)) :]
        outcome = read_outcome(bytes(mutated))
        if isinstance(outcome, AtomicStreamError):
            assert outcome.offset is not None
            assert 0 <= outcome.offset <= len(mutated)
            outcomes["error"] += 1
        else:
            assert read_atomic_stream(write_atomic_stream(outcome)) == outcome
            outcomes["stream"] += 1
    # Both outcomes happen (payload and text bytes can change freely), so both paths ran.
    assert outcomes["stream"] > 100
    assert outcomes["error"] > 100
