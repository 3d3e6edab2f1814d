"""Provenance values: the AtomicStream of a generation (docs/provenance.md)."""

from hartonomous.provenance.atomic_stream import (
    FORMAT_VERSION,
    NULL_STREAM_BYTES,
    NULL_STREAM_TEXT,
    AtomicStream,
    AtomicStreamError,
    Segment,
    SegmentKind,
    format_atomic_stream,
    parse_atomic_stream,
    read_atomic_stream,
    write_atomic_stream,
)

__all__ = [
    "FORMAT_VERSION",
    "NULL_STREAM_BYTES",
    "NULL_STREAM_TEXT",
    "AtomicStream",
    "AtomicStreamError",
    "Segment",
    "SegmentKind",
    "format_atomic_stream",
    "parse_atomic_stream",
    "read_atomic_stream",
    "write_atomic_stream",
]
