"""The ComponentStream: a composite atom's ordered, run-length-encoded list of children.

Binary format version 1 follows the original ``provenance.ComponentStream`` (.NET
``BinaryWriter``, little-endian), with one substitution because atoms here are addressed by
SHA-256 rather than by an integer id::

    offset  size  field
    0       1     isNull      always 0 (a present stream)
    1       4     version     int32 = 1
    5       4     runCount    int32 >= 1
    9       36*n  runs        runCount x (child: 32-byte SHA-256 digest, repeat: int32 >= 1)

The original's ``int64 atomId`` (rejected when <= 0) becomes the child's 32-byte digest. Decoding
is stricter than the original in three ways, each so that one list of children has exactly one
encoding (a composite atom's identity must not depend on who encoded it):

* the null marker (isNull = 1) is rejected: the original only wrote it for a SQL NULL value,
  which a column holds as NULL, never as bytes;
* zero runs is rejected: like the original encoder, which produced no stream for no components
  (empty content is the leaf atom of zero bytes, not an empty composite);
* two adjacent runs of the same child are rejected: the encoder always merges them.

Base64 of these bytes is the original's text form (``ToString``/``Parse``).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from hartonomous.atoms.hashing import DIGEST_SIZE

FORMAT_VERSION = 1
MAX_REPEAT = 2**31 - 1  # the repeat field is a signed int32

_HEADER = struct.Struct("<Bii")  # isNull, version, runCount
_RUN = struct.Struct(f"<{DIGEST_SIZE}si")


class ComponentStreamError(ValueError):
    """Raised for bytes that are not a valid version-1 ComponentStream, or runs that cannot be
    encoded as one."""


@dataclass(frozen=True, slots=True)
class Run:
    """``repeat`` consecutive occurrences of the child atom ``child`` (its SHA-256 digest)."""

    child: bytes
    repeat: int

    def __post_init__(self) -> None:
        if not isinstance(self.child, bytes) or len(self.child) != DIGEST_SIZE:
            raise ComponentStreamError(
                f"a run's child is a {DIGEST_SIZE}-byte SHA-256 digest, got {self.child!r:.80}"
            )
        if not 1 <= self.repeat <= MAX_REPEAT:
            raise ComponentStreamError(
                f"a run's repeat must be in 1..{MAX_REPEAT}, got {self.repeat}"
            )


def merge_runs(runs: Iterable[Run | tuple[bytes, int]]) -> tuple[Run, ...]:
    """Merge adjacent runs of the same child, as the original ``Append`` does.

    Raises ``ComponentStreamError`` if a merged repeat would not fit the int32 field (the original
    checks overflow the same way) or if a run is invalid.
    """
    merged: list[Run] = []
    for item in runs:
        run = item if isinstance(item, Run) else Run(*item)
        if merged and merged[-1].child == run.child:
            merged[-1] = Run(run.child, merged[-1].repeat + run.repeat)
        else:
            merged.append(run)
    return tuple(merged)


def runs_from_children(children: Iterable[bytes]) -> tuple[Run, ...]:
    """Runs for an ordered sequence of child digests (for example a file's chunks in order)."""
    return merge_runs((child, 1) for child in children)


def total_components(runs: Iterable[Run]) -> int:
    """How many children the runs expand to (the original's ``TotalComponents``)."""
    return sum(run.repeat for run in runs)


def encode_component_stream(runs: Iterable[Run | tuple[bytes, int]]) -> bytes:
    """Encode runs (merging adjacent equal children first) as a version-1 ComponentStream."""
    merged = merge_runs(runs)
    if not merged:
        raise ComponentStreamError("a ComponentStream needs at least one run")
    out = bytearray(_HEADER.size + _RUN.size * len(merged))
    _HEADER.pack_into(out, 0, 0, FORMAT_VERSION, len(merged))
    for index, run in enumerate(merged):
        _RUN.pack_into(out, _HEADER.size + index * _RUN.size, run.child, run.repeat)
    return bytes(out)


def decode_component_stream(data: bytes | bytearray | memoryview) -> tuple[Run, ...]:
    """Decode a version-1 ComponentStream strictly; raise ``ComponentStreamError`` on any defect.

    The declared run count is checked against the actual length before anything is allocated, so a
    forged count cannot make the decoder reserve memory for it.
    """
    view = memoryview(data).cast("B")
    if len(view) < _HEADER.size:
        if len(view) >= 1 and view[0] == 1:
            raise ComponentStreamError("ComponentStream is the null marker (isNull = 1)")
        raise ComponentStreamError(
            f"ComponentStream truncated: {len(view)} bytes, the header alone is {_HEADER.size}"
        )
    is_null, version, run_count = _HEADER.unpack_from(view, 0)
    if is_null == 1:
        raise ComponentStreamError("ComponentStream is the null marker (isNull = 1)")
    if is_null != 0:
        raise ComponentStreamError(f"ComponentStream isNull flag must be 0 or 1, got {is_null}")
    if version != FORMAT_VERSION:
        raise ComponentStreamError(
            f"unsupported ComponentStream version {version} (expected {FORMAT_VERSION})"
        )
    if run_count <= 0:
        raise ComponentStreamError(f"ComponentStream run count must be >= 1, got {run_count}")
    expected = _HEADER.size + run_count * _RUN.size
    if len(view) < expected:
        raise ComponentStreamError(
            f"ComponentStream truncated: {run_count} runs need {expected} bytes, got {len(view)}"
        )
    if len(view) > expected:
        raise ComponentStreamError(
            f"ComponentStream has {len(view) - expected} trailing bytes after {run_count} runs"
        )

    runs: list[Run] = []
    for index, (child, repeat) in enumerate(_RUN.iter_unpack(view[_HEADER.size :])):
        if repeat <= 0:
            raise ComponentStreamError(
                f"ComponentStream run {index}: repeat must be >= 1, got {repeat}"
            )
        if runs and runs[-1].child == child:
            raise ComponentStreamError(
                f"ComponentStream runs {index - 1} and {index} repeat the same child "
                "(not the canonical merged form)"
            )
        runs.append(Run(child, repeat))
    return tuple(runs)


def component_stream_to_base64(data: bytes) -> str:
    """The original's text form of an encoded stream (``ToString``)."""
    return base64.b64encode(data).decode("ascii")


def component_stream_from_base64(text: str) -> tuple[Run, ...]:
    """Decode the text form strictly (``Parse``): invalid Base64 is a ``ComponentStreamError``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise ComponentStreamError(f"ComponentStream text is not valid Base64: {exc}") from exc
    return decode_component_stream(raw)
