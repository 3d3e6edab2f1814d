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
from typing import Protocol

from pyfastcdc import Chunk as PieceOfInput
from pyfastcdc import FastCDC

from hartonomous.atoms.hashing import sha256_digest

DEFAULT_MIN_SIZE = 16 * 1024
DEFAULT_AVG_SIZE = 64 * 1024
DEFAULT_MAX_SIZE = 256 * 1024
# Chunks are hashed in groups of about this many bytes by a thread pool while the next ones are
# cut: hashlib releases the GIL, so cutting and hashing overlap on separate cores. A group is
# large enough that handing it to a thread costs little beside hashing it.
_HASH_GROUP_BYTES = 512 * 1024


class BinaryReader(Protocol):
    """What the streaming chunker reads from: any binary file object (``open(p, "rb")``,
    ``io.BytesIO``, a socket file …). ``pyfastcdc`` uses ``readinto`` when the object has one."""

    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk: where it sits in the input, its content address and its bytes.

    ``data`` views the caller's buffer for in-memory input (zero copy; keep the buffer alive and
    unchanged) and a private copy for streamed input.
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
    Chunks are hashed in parallel with the cutting (see ``_hashed``).
    """
    pieces = _cutter(avg_size, min_size, max_size).cut_buf(memoryview(data).cast("B"))
    return _hashed((p.offset, p.length, p.data) for p in pieces)


def chunk_stream(
    stream: BinaryReader,
    *,
    avg_size: int = DEFAULT_AVG_SIZE,
    min_size: int = DEFAULT_MIN_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Iterator[Chunk]:
    """Cut a binary stream into the same chunks ``chunk_bytes`` gives for its whole content.

    Memory stays at about two maximum chunk sizes whatever the stream's length.
    """
    return _owned_chunks(_cutter(avg_size, min_size, max_size).cut_stream(stream))


def _owned_chunks(pieces: Iterator[PieceOfInput]) -> Iterator[Chunk]:
    # pyfastcdc reuses its read buffer for the next chunk, so each chunk gets its own copy.
    return _hashed((p.offset, p.length, memoryview(bytes(p.data))) for p in pieces)


_Piece = tuple[int, int, memoryview]


def _hashed(pieces: Iterable[_Piece]) -> Iterator[Chunk]:
    """The pieces as chunks, in order, hashed by the pool while the next pieces are cut.

    Input shorter than one group (every small file) is hashed inline, with no thread involved.
    At most one group per worker is in flight, so memory stays bounded for streams.
    """
    pending: deque[tuple[list[_Piece], Future[list[bytes]]]] = deque()
    group: list[_Piece] = []
    size = 0
    in_flight = _workers()
    for piece in pieces:
        group.append(piece)
        size += piece[1]
        if size < _HASH_GROUP_BYTES:
            continue
        while len(pending) >= in_flight:
            yield from _ready(*pending.popleft())
        pending.append((group, _pool().submit(_digests, group)))
        group, size = [], 0
    while pending:
        yield from _ready(*pending.popleft())
    if group:
        yield from _ready(group, None)


def _digests(group: list[_Piece]) -> list[bytes]:
    return [sha256_digest(data) for _, _, data in group]


def _ready(group: list[_Piece], digests: Future[list[bytes]] | None) -> Iterator[Chunk]:
    hashes = digests.result() if digests is not None else _digests(group)
    for (offset, length, data), digest in zip(group, hashes, strict=True):
        yield Chunk(offset, length, digest, data)


@cache
def _workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


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
