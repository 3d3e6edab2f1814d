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

from pyfastcdc import FastCDC

from hartonomous.atoms.hashing import sha256_digest

DEFAULT_MIN_SIZE = 16 * 1024
DEFAULT_AVG_SIZE = 64 * 1024
DEFAULT_MAX_SIZE = 256 * 1024
# Chunks are hashed in groups by a thread pool (and by the cutting thread when the pool falls
# behind) while the next ones are cut: hashlib releases the GIL, so cutting and hashing overlap
# on separate cores. A group must be large enough that handing it to a thread costs little
# beside hashing it (8 MiB groups ran faster than 2 MiB ones: docs/ingest.md, "Measured").
# In-memory input costs no memory per group (chunks view the caller's buffer).
_HASH_GROUP_BYTES = 8 * 1024 * 1024
# A stream is read in blocks of this size, each block's chunks hashed as one group. Its memory
# is bounded by the blocks alive at once (docs/atoms.md, "Content-defined chunking").
STREAM_BLOCK_BYTES = 2 * 1024 * 1024
_MAX_HASH_WORKERS = 2
# The cutting thread hashes a group itself only when more than this many wait unstarted, so
# that a worker finishing a group still finds one queued (with one, the worker and this thread
# often finished together and the worker sat idle while this thread cut the next).
_KEEP_QUEUED = 2


class BinaryReader(Protocol):
    """What the streaming chunker reads from: any binary file object (``open(p, "rb")``,
    ``io.BytesIO``, a socket file …). Short reads are read on until the block is full."""

    def read(self, size: int, /) -> bytes: ...


_Piece = tuple[int, int, memoryview]  # offset, length, bytes
_Group = tuple[list[_Piece], bool]  # pieces, whether they are the input's last
_Digests = Future[list[bytes]] | list[bytes]  # a group's digests: to come from the pool, or here


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
    view = memoryview(data).cast("B")
    pieces = _cutter(avg_size, min_size, max_size).cut_buf(view)
    return _hashed_groups(_grouped(((p.offset, p.length, p.data) for p in pieces), len(view)))


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


def _stream_blocks(cutter: FastCDC, stream: BinaryReader, max_size: int) -> Iterator[_Group]:
    """The stream's chunks, block by block, each viewing the bytes ``read`` returned, each
    block flagged when it is the stream's last.

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
            yield pieces, ended
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


def _grouped(pieces: Iterable[_Piece], total: int) -> Iterator[_Group]:
    """The pieces of ``total`` bytes in groups of at least ``_HASH_GROUP_BYTES`` (the last one
    may be smaller), each flagged when it is the last."""
    group: list[_Piece] = []
    size = 0
    for piece in pieces:
        group.append(piece)
        size += piece[1]
        if size >= _HASH_GROUP_BYTES:
            yield group, piece[0] + piece[1] == total
            group, size = [], 0
    if group:
        yield group, True


def _hashed_groups(groups: Iterable[_Group]) -> Iterator[Chunk]:
    """The groups' pieces as chunks, in order, each group hashed by the pool or by this thread.

    This thread cuts and hands each group to the pool as soon as it is cut; when more than
    ``_KEEP_QUEUED`` wait unstarted (one core cuts about twice as fast as one hashes), it
    hashes the newest of them itself, and once cutting is over it takes the newest while the
    pool has another to start. On two cores that is two busy threads sharing the hashing, not
    three: with a third (two workers, as before), whichever thread the system stopped while it
    held the GIL stalled the other two, and the pool's first group waited for a second one to
    be cut. The last group (all of an input of one group: every small file) is hashed here with
    no hand-off. At most ``workers + _KEEP_QUEUED + 1`` groups are alive at once, so a stream's
    memory stays bounded (docs/atoms.md).
    """
    pending: deque[tuple[list[_Piece], _Digests]] = deque()
    workers = _workers()
    alive = workers + _KEEP_QUEUED + 1  # being hashed, queued, hashed here
    for group, last in groups:
        inline = last or not workers
        pending.append((group, _digests(group) if inline else _pool().submit(_digests, group)))
        _help(pending, _KEEP_QUEUED)
        while pending and (len(pending) > alive or _done(pending[0][1])):
            yield from _ready(*pending.popleft())
    # Cutting is over: take the newest unstarted group while the pool has another to start.
    _help(pending, 1)
    while pending:
        yield from _ready(*pending.popleft())


def _help(pending: deque[tuple[list[_Piece], _Digests]], keep: int) -> None:
    """Hash here the newest groups the pool has not started while more than ``keep`` wait."""
    waiting = [
        index
        for index, (_, job) in enumerate(pending)
        if isinstance(job, Future) and not (job.running() or job.done())
    ]
    while len(waiting) > keep:
        index = waiting.pop()
        group, job = pending[index]
        if isinstance(job, Future) and job.cancel():
            pending[index] = (group, _digests(group))


def _done(job: _Digests) -> bool:
    return isinstance(job, list) or job.done()


def _digests(group: list[_Piece]) -> list[bytes]:
    return [sha256_digest(data) for _, _, data in group]


def _ready(group: list[_Piece], digests: _Digests) -> Iterator[Chunk]:
    hashes = digests if isinstance(digests, list) else digests.result()
    for (offset, length, data), digest in zip(group, hashes, strict=True):
        yield Chunk(offset, length, digest, data)


@cache
def _workers() -> int:
    # One core cuts at 1.5-2.4 GB/s and SHA-256 runs at about 1.3 GB/s per core: the cutting
    # thread and two hashing threads keep up with the cutter, and more would only raise a
    # stream's memory. The cutting thread hashes too, so it leaves one core to each worker.
    return max(0, min(_MAX_HASH_WORKERS, len(os.sched_getaffinity(0)) - 1))


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
