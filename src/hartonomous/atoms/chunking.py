"""Content-defined chunking (FastCDC 2020) of binary payloads into leaf-atom chunks.

Boundaries depend only on the bytes around them, so an insertion near the start of a file moves
one or two boundaries and every later chunk (and its atom) is shared with the old version.

The cutting itself is ``pyfastcdc`` (a Cython port of nlfiedler/fastcdc-rs v2020 with the gear
table of the paper's reference code). Boundaries are part of the stored data's identity, so the
dependency is pinned to an exact version: a new version must reproduce
``tests/unit/atoms/test_chunking.py::test_golden_boundaries`` before the pin moves.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Protocol

from pyfastcdc import FastCDC

from hartonomous.atoms.hashing import sha256_digest

DEFAULT_MIN_SIZE = 16 * 1024
DEFAULT_AVG_SIZE = 64 * 1024
DEFAULT_MAX_SIZE = 256 * 1024
# Chunks are hashed in groups by a thread pool while the next ones are cut: hashlib releases
# the GIL, so cutting and hashing overlap on separate cores. A group must be large enough that
# handing it to a thread costs little beside hashing it (measured with benchmarks/ingest.py:
# 512 KiB groups ran at 0.80x single-thread SHA-256, 2 MiB at 0.90x, 8 MiB at 0.97x).
# In-memory input costs no memory per group (chunks view the caller's buffer).
_HASH_GROUP_BYTES = 8 * 1024 * 1024
# A stream is read in blocks of this size, each block's chunks hashed as one group. Its memory
# is bounded by the blocks alive at once (docs/atoms.md, "Content-defined chunking").
STREAM_BLOCK_BYTES = 2 * 1024 * 1024
_MAX_HASH_WORKERS = 2


class BinaryReader(Protocol):
    """What the streaming chunker reads from: any binary file object (``open(p, "rb")``,
    ``io.BytesIO``, a socket file …). Short reads are read on until the block is full."""

    def read(self, size: int, /) -> bytes: ...


_Piece = tuple[int, int, memoryview]  # offset, length, bytes


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk: where it sits in the input, its content address and its bytes.

    ``data`` views the caller's buffer for in-memory input (zero copy; keep the buffer alive and
    unchanged) and the bytes the stream returned for streamed input (immutable, never reused).
    """

    offset: int
    length: int
    digest: bytes
    data: memoryview


def chunk_bytes(
    data: bytes | bytearray | memoryview,
    *,
    avg_size: int = DEFAULT_AVG_SIZE,
    min_size: int = DEFAULT_MIN_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Iterator[Chunk]:
    """Cut an in-memory buffer into content-defined chunks, each hashed with SHA-256.

    Empty input yields no chunk. Invalid sizes raise ``ValueError`` here, not at first iteration.
    Chunks are hashed in parallel with the cutting (see ``_hashed_groups``).
    """
    pieces = _cutter(avg_size, min_size, max_size).cut_buf(memoryview(data).cast("B"))
    return _hashed_groups(_grouped((p.offset, p.length, p.data) for p in pieces))


def chunk_stream(
    stream: BinaryReader,
    *,
    avg_size: int = DEFAULT_AVG_SIZE,
    min_size: int = DEFAULT_MIN_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Iterator[Chunk]:
    """Cut a binary stream into the same chunks ``chunk_bytes`` gives for its whole content.

    The stream is read in blocks of ``STREAM_BLOCK_BYTES`` (``read``); each chunk views its
    block (no copy; a chunk across two blocks views a copy of at most ``max_size`` bytes).
    Memory stays within the budget of docs/atoms.md (about ten blocks' worth) whatever the
    stream's length; chunks the caller keeps keep their blocks alive.
    """
    cutter = _cutter(avg_size, min_size, max_size)
    return _hashed_groups(_stream_blocks(cutter, stream, max_size))


def _stream_blocks(cutter: FastCDC, stream: BinaryReader, max_size: int) -> Iterator[list[_Piece]]:
    """The stream's chunks, block by block, each viewing the bytes ``read`` returned.

    Only a block's last chunk may not be final (see ``_final``): its bytes, the carry, start
    the next block's first chunk. They are cut again with the next block's first bytes,
    copied behind them up to ``max_size`` bytes in all: that always ends the chunk (FastCDC's
    rolling hash matches, the stream ends, or the chunk reaches ``max_size``), and it always
    ends in the new block (no cut point fell in the carry before). Cutting goes on in the
    block itself from there, so every byte is cut once, plus the carry (part of one chunk)
    again, and at most ``max_size`` bytes are copied per block.
    """
    size = max(STREAM_BLOCK_BYTES, max_size)
    carry: memoryview = memoryview(b"")
    offset = 0  # stream offset of the carry's first byte
    while True:
        block = memoryview(_read_fully(stream, size)).toreadonly()
        ended = len(block) < size
        if not carry and not block:
            return
        pieces: list[_Piece] = []
        resume = 0  # where cutting goes on in the block
        if carry:
            joined = memoryview(bytes(carry) + block[: max_size - len(carry)]).toreadonly()
            first = next(iter(cutter.cut_buf(joined)))
            pieces.append((offset, first.length, first.data))
            offset += first.length
            resume = first.length - len(carry)
        cut = resume + _final(
            cutter, block[resume:], offset, pieces, complete=ended, max_size=max_size
        )
        if pieces:
            yield pieces
        if ended:
            return
        carry, offset = block[cut:], offset + cut - resume


def _final(
    cutter: FastCDC,
    data: memoryview,
    offset: int,
    pieces: list[_Piece],
    *,
    complete: bool,
    max_size: int,
) -> int:
    """Append the chunks of ``data`` (at stream ``offset``) that the whole stream gives too;
    return where the first one that may not be final starts (``len(data)`` if none).

    ``complete``: ``data`` runs to the end of the stream, so all its chunks are final.
    Otherwise a chunk is final when FastCDC ended it before the end of ``data`` (its rolling
    hash matched, and from the chunk's start the same bytes give the same match whatever
    follows them) or at ``max_size``: only a last chunk that ran to the end of ``data``
    shorter than ``max_size`` may go on in the bytes that follow.
    """
    end = len(data)
    for piece in cutter.cut_buf(data):
        start: int = piece.offset
        length: int = piece.length
        if not complete and start + length == end and length < max_size:
            return start
        pieces.append((offset + start, length, piece.data))
    return end


def _read_fully(stream: BinaryReader, size: int) -> bytes:
    """``size`` bytes, fewer only at the end of the stream (streams may return short reads)."""
    data = stream.read(size)
    if len(data) in (0, size):
        return data
    parts = [data]
    left = size - len(data)
    while left and (more := stream.read(left)):
        parts.append(more)
        left -= len(more)
    return b"".join(parts)


def _grouped(pieces: Iterable[_Piece]) -> Iterator[list[_Piece]]:
    """The pieces in groups of at least ``_HASH_GROUP_BYTES`` (the last one may be smaller)."""
    group: list[_Piece] = []
    size = 0
    for piece in pieces:
        group.append(piece)
        size += piece[1]
        if size >= _HASH_GROUP_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def _hashed_groups(groups: Iterable[list[_Piece]]) -> Iterator[Chunk]:
    """The groups' pieces as chunks, in order, each group hashed by the pool while the next ones
    are cut.

    Input of one group (every small file) is hashed inline, with no thread involved. At most one
    group per worker is in flight, so memory stays bounded for streams.
    """
    remaining = iter(groups)
    first = next(remaining, None)
    second = next(remaining, None) if first is not None else None
    if first is None or second is None:
        if first is not None:
            yield from _ready(first, _digests(first))
        return
    pending: deque[tuple[list[_Piece], Future[list[bytes]]]] = deque()
    in_flight = _workers()
    for group in chain((first, second), remaining):
        while len(pending) >= in_flight:
            yield from _ready(*pending.popleft())
        pending.append((group, _pool().submit(_digests, group)))
    while pending:
        yield from _ready(*pending.popleft())


def _digests(group: list[_Piece]) -> list[bytes]:
    return [sha256_digest(data) for _, _, data in group]


def _ready(group: list[_Piece], digests: Future[list[bytes]] | list[bytes]) -> Iterator[Chunk]:
    hashes = digests if isinstance(digests, list) else digests.result()
    for (offset, length, data), digest in zip(group, hashes, strict=True):
        yield Chunk(offset, length, digest, data)


@cache
def _workers() -> int:
    # One core cuts at 1.5-2.4 GB/s and SHA-256 runs at about 1.3 GB/s per core: two hashing
    # threads keep up with the cutter, and more would only raise a stream's memory.
    return max(1, min(_MAX_HASH_WORKERS, len(os.sched_getaffinity(0))))


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_workers(), thread_name_prefix="chunk-hash")


def _cutter(avg_size: int, min_size: int, max_size: int) -> FastCDC:
    if not 0 < 2 * min_size <= avg_size <= max_size:
        raise ValueError(
            "chunk sizes must satisfy 0 < 2*min_size <= avg_size <= max_size, got "
            f"min_size={min_size}, avg_size={avg_size}, max_size={max_size}"
        )
    # FastCDC skips the first min_size bytes of each chunk before looking for a cut point, so its
    # mean chunk length is about (its avg_size + min_size): ask it for the difference so that our
    # avg_size is the mean callers actually get (68-70 KiB for the defaults on random data).
    try:
        return FastCDC(avg_size - min_size, min_size=min_size, max_size=max_size)
    except ValueError as exc:
        # pyfastcdc's own bounds (min 64 B..1 MiB, max 1 KiB..16 MiB); its message names its
        # internal avg_size, so say which of ours were given.
        raise ValueError(
            f"chunk sizes min_size={min_size}, avg_size={avg_size}, max_size={max_size} are "
            f"outside FastCDC's supported range: {exc}"
        ) from exc
