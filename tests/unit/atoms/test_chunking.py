"""Content-defined chunking: determinism, bounds, reconstruction, streaming, locality."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from pathlib import Path

import pytest

from hartonomous.atoms import chunking
from hartonomous.atoms.chunking import (
    DEFAULT_AVG_SIZE,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    STREAM_BLOCK_BYTES,
    Chunk,
    chunk_bytes,
    chunk_stream,
)

MIB = 1024 * 1024
STREAM_BUDGET = 20 * MIB


def pseudo_random(size: int, label: bytes = b"hartonomous chunking test") -> bytes:
    # SHAKE-256 output is fixed by the standard, so the same input exists on every machine and
    # every Python/numpy version: the golden boundaries below stay meaningful.
    return hashlib.shake_256(label).digest(size)


def layout(chunks: list[Chunk]) -> list[tuple[int, int, bytes]]:
    return [(c.offset, c.length, c.digest) for c in chunks]


class ShortReads:
    """A stream that returns at most ``step`` bytes per call, as pipes and sockets may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def read(self, size: int, /) -> bytes:
        n = min(size, self._step, len(self._data) - self._pos)
        self._pos += n
        return bytes(self._data[self._pos - n : self._pos])


class Endless:
    """A lazily generated stream of ``total`` bytes that never exists in memory at once."""

    def __init__(self, total: int) -> None:
        self._block = pseudo_random(MIB + 12345, b"endless")
        self._left = total
        self._pos = 0

    def read(self, size: int, /) -> bytes:
        n = min(size, self._left, len(self._block) - self._pos)
        data = self._block[self._pos : self._pos + n]
        self._pos = (self._pos + n) % len(self._block)
        self._left -= n
        return data


def test_golden_boundaries() -> None:
    # Pinned output of pyfastcdc 0.3.1 with the default sizes, identical to the Rust reference
    # (fastcdc-rs 5.0.0, v2020::FastCDC::new(buf, 16384, 49152, 262144)): changing the library
    # or its parameters must not silently move boundaries of already stored data.
    chunks = list(chunk_bytes(pseudo_random(2 * MIB, b"hartonomous chunking golden vector")))
    assert [c.length for c in chunks] == [
        42490, 54721, 23518, 77735, 101617, 32281, 57446, 95477, 60913, 33423, 95631,
        32566, 19192, 91289, 46070, 53396, 67752, 57809, 102630, 105110, 50197, 51856,
        100300, 62323, 75856, 40754, 121870, 52768, 96078, 29040, 71731, 45735, 47578,
    ]  # fmt: skip
    assert chunks[0].digest.hex() == (
        "0e4a66120afe306a703cc3d701fed2aa87defaec6e272818893b5ab54db24c39"
    )


def test_deterministic() -> None:
    data = pseudo_random(3 * MIB)
    assert layout(list(chunk_bytes(data))) == layout(list(chunk_bytes(bytes(data))))


def test_chunks_reassemble_and_are_hashed() -> None:
    data = pseudo_random(3 * MIB + 7)
    chunks = list(chunk_bytes(data))
    assert b"".join(c.data for c in chunks) == data
    offset = 0
    for c in chunks:
        assert c.offset == offset
        assert c.length == len(c.data)
        assert c.digest == hashlib.sha256(c.data).digest()
        offset += c.length
    assert offset == len(data)


@pytest.mark.parametrize(
    "data",
    [
        pseudo_random(4 * MIB),
        bytes(2 * MIB),  # no content-defined cut in constant data: every chunk hits max_size
        (b"abcdefgh" * 300_000),
    ],
    ids=["random", "zeros", "periodic"],
)
def test_bounds(data: bytes) -> None:
    chunks = list(chunk_bytes(data))
    assert b"".join(c.data for c in chunks) == data
    for c in chunks[:-1]:
        assert DEFAULT_MIN_SIZE <= c.length <= DEFAULT_MAX_SIZE
    assert 0 < chunks[-1].length <= DEFAULT_MAX_SIZE


def test_mean_size_near_average() -> None:
    chunks = list(chunk_bytes(pseudo_random(16 * MIB)))
    mean = sum(c.length for c in chunks) / len(chunks)
    assert 56 * 1024 <= mean <= 80 * 1024


def test_custom_sizes() -> None:
    data = pseudo_random(MIB)
    chunks = list(chunk_bytes(data, avg_size=8192, min_size=2048, max_size=32768))
    assert b"".join(c.data for c in chunks) == data
    assert all(2048 <= c.length <= 32768 for c in chunks[:-1])
    assert len(chunks) > 60


@pytest.mark.parametrize(
    ("avg", "low", "high"), [(64, 16, 256), (30000, 16384, 262144), (65536, 16384, 32768)]
)
def test_invalid_sizes_rejected(avg: int, low: int, high: int) -> None:
    with pytest.raises(ValueError, match="chunk sizes"):
        chunk_bytes(b"x", avg_size=avg, min_size=low, max_size=high)
    with pytest.raises(ValueError, match="chunk sizes"):
        chunk_stream(io.BytesIO(b"x"), avg_size=avg, min_size=low, max_size=high)


def test_small_and_empty_input() -> None:
    assert list(chunk_bytes(b"")) == []
    assert list(chunk_stream(io.BytesIO(b""))) == []
    (only,) = chunk_bytes(b"tiny")
    assert (only.offset, only.length, bytes(only.data)) == (0, 4, b"tiny")


def test_accepts_bytearray_and_memoryview() -> None:
    data = pseudo_random(MIB)
    expected = layout(list(chunk_bytes(data)))
    assert layout(list(chunk_bytes(bytearray(data)))) == expected
    assert layout(list(chunk_bytes(memoryview(data)))) == expected


@pytest.mark.parametrize("step", [1 << 20, 4096, 333])
def test_stream_equals_in_memory(step: int) -> None:
    data = pseudo_random(3 * MIB + 1)
    expected = layout(list(chunk_bytes(data)))
    assert layout(list(chunk_stream(ShortReads(data, step)))) == expected


def test_stream_of_real_file(tmp_path: Path) -> None:
    data = pseudo_random(2 * MIB + 99)
    expected = layout(list(chunk_bytes(data)))
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with path.open("rb") as fh:
        assert layout(list(chunk_stream(fh))) == expected


@pytest.mark.parametrize("block", [DEFAULT_MAX_SIZE, 300 * 1024, STREAM_BLOCK_BYTES])
@pytest.mark.parametrize("content", ["random", "zeros"])
def test_stream_equals_in_memory_around_block_ends(
    block: int, content: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Streams are cut block by block: chunks near a block's end (zeros: every chunk is exactly
    # max_size, so some end exactly there) must still be those of the whole content.
    monkeypatch.setattr(chunking, "STREAM_BLOCK_BYTES", block)
    size = max(block, DEFAULT_MAX_SIZE)
    for length in (size - 1, size, size + 1, 2 * size + DEFAULT_MAX_SIZE, 3 * size - 1):
        data = pseudo_random(length) if content == "random" else bytes(length)
        expected = layout(list(chunk_bytes(data)))
        assert layout(list(chunk_stream(io.BytesIO(data)))) == expected, length
        assert layout(list(chunk_stream(ShortReads(data, 70_001)))) == expected, length


def test_stream_with_custom_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunking, "STREAM_BLOCK_BYTES", 100_000)
    data = pseudo_random(MIB + 3)
    sizes = {"avg_size": 8192, "min_size": 2048, "max_size": 32768}
    expected = layout(list(chunk_bytes(data, **sizes)))
    assert layout(list(chunk_stream(io.BytesIO(data), **sizes))) == expected


def test_streamed_chunks_stay_valid_after_iteration() -> None:
    data = pseudo_random(2 * MIB)
    chunks = list(chunk_stream(io.BytesIO(data)))
    assert b"".join(c.data for c in chunks) == data


def test_stream_memory_is_bounded() -> None:
    total = 64 * MIB
    tracemalloc.start()
    try:
        seen = 0
        for c in chunk_stream(Endless(total)):
            seen += c.length
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == total
    # The budget of docs/atoms.md, whatever the stream's length: the blocks alive at once (one
    # per hashing worker, the one hashed last, the one being read and the one the caller's
    # last chunk views, 2 MiB each), a block joined from short reads and this reader's 1 MiB.
    assert peak < STREAM_BUDGET


@pytest.mark.parametrize("position", [0, 100, 5000, 20000, 70000])
def test_insertion_near_start_changes_few_chunks(position: int) -> None:
    original = pseudo_random(4 * MIB)
    edited = original[:position] + b"inserted!" + original[position:]
    before = {c.digest for c in chunk_bytes(original)}
    after = list(chunk_bytes(edited))
    new = [c for c in after if c.digest not in before]
    # Every other chunk is reused: the edit does not shift later boundaries.
    assert 1 <= len(new) <= 2


def serial_pass(data: bytes) -> list[tuple[int, int, bytes]]:
    """The plain serial pass: FastCDC over the whole buffer, each chunk hashed in order here."""
    cutter = chunking._cutter(DEFAULT_AVG_SIZE, DEFAULT_MIN_SIZE, DEFAULT_MAX_SIZE)
    return [
        (piece.offset, piece.length, hashlib.sha256(piece.data).digest())
        for piece in cutter.cut_buf(data)
    ]


GROUP = 512 * 1024  # groups and stream blocks this small make many of them from small inputs


@pytest.mark.parametrize("workers", [1, 2])
def test_grouped_hashing_gives_the_serial_pass(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whichever way the chunks are grouped for the hashing threads (one group hashed inline,
    # groups in flight on one or two workers), they are the serial pass's. Sizes straddle the
    # group and block thresholds (a group ends at the first chunk end past them) and cover
    # inputs of one, two and many groups.
    monkeypatch.setattr(chunking, "_HASH_GROUP_BYTES", GROUP)
    monkeypatch.setattr(chunking, "STREAM_BLOCK_BYTES", GROUP)
    monkeypatch.setattr(chunking, "_workers", lambda: workers)
    sizes = [1, DEFAULT_MIN_SIZE - 1, DEFAULT_MAX_SIZE + 1]
    sizes += [n * GROUP + delta for n in (1, 2, 7) for delta in (-1, 0, 1)]
    for size in sizes:
        data = pseudo_random(size, b"serial pass %d" % size)
        expected = serial_pass(data)
        assert layout(list(chunk_bytes(data))) == expected, size
        assert layout(list(chunk_stream(io.BytesIO(data)))) == expected, size
