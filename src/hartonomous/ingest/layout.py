"""How one file becomes atoms: the plan of leaves and composites that reconstruct it exactly.

- Plain text (spans tile the file): the file atom is the list of its paragraph atoms, so an
  identical paragraph is one atom across every document that contains it.
- Everything else: the file is cut into spans (for model files: the header and one span per
  tensor, so identical tensors dedup across files), each span into content-defined chunks.
- Text extracted from documents (HTML, PDF, DOCX) and media derived from videos are atoms of
  their own, related to the file atom, not part of its bytes.

A one-part composite is never made: a span or file of one chunk *is* that chunk's leaf atom
(same bytes, same SHA-256).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from hartonomous.atoms.chunking import Chunk, chunk_stream
from hartonomous.atoms.component_stream import Run, merge_runs
from hartonomous.atoms.hashing import BackgroundSha256
from hartonomous.atoms.store import CompositeAtom, JsonObject, LeafAtom
from hartonomous.ingest.extractors import Extraction, TextSegment
from hartonomous.ingest.models import ModelDescription
from hartonomous.json_types import JsonValue

CHUNK_MODALITY = "binary"
CHUNK_SUBTYPE = "chunk"
_LEAF_BATCH_BYTES = 8 * 1024 * 1024


class AtomSink(Protocol):
    """Where atoms go: `AtomWriter` (now, one file) or `AtomBatch` (later, many files)."""

    def put_leaves(self, leaves: Iterable[LeafAtom]) -> None: ...

    def put_composite(self, atom: CompositeAtom) -> bool: ...

    def describe(
        self, atom_id: bytes, modality: str, subtype: str, metadata: JsonObject
    ) -> None: ...


@dataclass(frozen=True)
class StoredAtom:
    atom_id: bytes
    size_bytes: int


@dataclass(frozen=True)
class FileAtoms:
    """What was written for one file: its atom and, for chunked files, its spans' atoms."""

    root: StoredAtom
    spans: list[tuple[int, int, bytes]] = field(default_factory=list)  # (offset, length, atom)


class _SpanReader:
    """A read-only window [start, start + length) of an open file."""

    def __init__(self, handle: BinaryIO, start: int, length: int) -> None:
        handle.seek(start)
        self._handle = handle
        self._left = length

    def read(self, size: int = -1, /) -> bytes:
        wanted = self._left if size < 0 else min(size, self._left)
        data = self._handle.read(wanted)
        self._left -= len(data)
        return data


def write_text_file(writer: AtomSink, data: bytes, extraction: Extraction) -> FileAtoms:
    """A plain-text file as the sequence of its paragraph atoms."""
    leaves = [
        _text_leaf(data[start:end], segment, extraction.subtype)
        for segment in extraction.segments
        for start, end in [_span(segment)]
    ]
    root_id = hashlib.sha256(data).digest()
    if len(leaves) == 1:
        only = leaves[0]
        leaves = [
            LeafAtom(
                root_id,
                only.data,
                extraction.modality,
                extraction.subtype,
                only.canonical_text,
                dict(extraction.metadata),
            )
        ]
    writer.put_leaves(leaves)
    if len(leaves) > 1:
        writer.put_composite(
            CompositeAtom(
                root_id,
                merge_runs(Run(leaf.atom_id, 1) for leaf in leaves),
                len(data),
                extraction.modality,
                extraction.subtype,
                dict(extraction.metadata),
            )
        )
    return FileAtoms(StoredAtom(root_id, len(data)))


def write_binary_file(
    writer: AtomSink,
    path: Path,
    size: int,
    extraction: Extraction | None,
    model: ModelDescription | None,
) -> FileAtoms:
    """Any file of `size` bytes as spans of content-defined chunks; model tensors are spans of
    their own.

    Every size written is of the bytes actually read, so the atoms are consistent whatever the
    file did meanwhile; a file that shrank gives a root smaller than `size` (the caller checks).
    """
    modality = "model" if model is not None else (extraction.modality if extraction else "binary")
    subtype = model.format if model is not None else (extraction.subtype if extraction else "")
    metadata: dict[str, JsonValue] = dict(extraction.metadata) if extraction else {}
    spans: list[StoredAtom] = []
    ranges = list(_spans(size, model))
    # A file of one span is that span: its digest is the span's, not hashed a second time.
    whole = BackgroundSha256() if len(ranges) > 1 else None
    with path.open("rb") as handle:
        for start, length in ranges:
            span = _write_span(writer, _SpanReader(handle, start, length), whole)
            spans.append(span)
    read = sum(span.size_bytes for span in spans)
    if whole is None:
        root = spans[0]
    else:
        root_id = whole.digest()
        writer.put_composite(
            CompositeAtom(
                root_id,
                merge_runs(Run(span.atom_id, 1) for span in spans),
                read,
                modality,
                subtype,
                metadata,
            )
        )
        root = StoredAtom(root_id, read)
    if len(spans) == 1 and (modality, subtype) != (CHUNK_MODALITY, CHUNK_SUBTYPE):
        # A one-chunk file is its chunk; label it as the file it is.
        writer.describe(root.atom_id, modality, subtype, metadata)
    return FileAtoms(
        root,
        [
            (start, length, span.atom_id)
            for (start, length), span in zip(ranges, spans, strict=True)
        ],
    )


def write_bytes(
    writer: AtomSink, data: bytes, modality: str, subtype: str, metadata: JsonObject
) -> StoredAtom:
    """Bytes in memory (an inference's input or output) as one atom labelled ``modality`` /
    ``subtype``: content-defined chunks, and a composite of them when there is more than one.

    The atom's id is the SHA-256 of ``data`` whatever its size (a one-chunk atom is its chunk).
    """
    stored = _write_span(writer, io.BytesIO(data), None)
    writer.describe(stored.atom_id, modality, subtype, metadata)
    return stored


def write_derived(
    writer: AtomSink, extraction: Extraction
) -> list[tuple[str, bytes, dict[str, JsonValue]]]:
    """Atoms for extracted text and derived media, with the relation that links each."""
    related: list[tuple[str, bytes, dict[str, JsonValue]]] = []
    texts = [s for s in extraction.segments if s.span is None]
    leaves = [_text_leaf(s.text.encode(), s, extraction.subtype) for s in texts]
    writer.put_leaves(leaves)
    related += [
        ("extracted_text", leaf.atom_id, {"kind": s.kind, **dict(s.metadata)})
        for leaf, s in zip(leaves, texts, strict=True)
    ]
    for media in extraction.derived:
        stored = _write_span(writer, io.BytesIO(media.data), None)
        writer.describe(stored.atom_id, media.modality, media.subtype, dict(media.metadata))
        related.append(("derived_media", stored.atom_id, dict(media.metadata)))
    return related


def _write_span(
    writer: AtomSink, reader: _SpanReader | io.BytesIO, whole: BackgroundSha256 | None
) -> StoredAtom:
    # A span of one chunk is that chunk (its digest is known): the span hash starts only with
    # a second chunk, fed the first one then.
    span_hash: BackgroundSha256 | None = None
    first: bytes | memoryview = b""
    children: list[bytes] = []
    length = 0
    for batch in _batched(chunk_stream(reader)):
        for leaf in batch:
            if whole is not None:
                whole.update(leaf.data)
            if not children:
                first = leaf.data
            else:
                if span_hash is None:
                    span_hash = BackgroundSha256()
                    span_hash.update(first)
                span_hash.update(leaf.data)
            children.append(leaf.atom_id)
            length += len(leaf.data)
        writer.put_leaves(batch)
    if span_hash is None and children:
        return StoredAtom(children[0], length)
    if not children:
        # An empty span (e.g. a zero-length tensor) is the empty leaf.
        empty = hashlib.sha256(b"").digest()
        writer.put_leaves([LeafAtom(empty, b"", CHUNK_MODALITY, CHUNK_SUBTYPE)])
        return StoredAtom(empty, 0)
    assert span_hash is not None
    span_id = span_hash.digest()
    writer.put_composite(
        CompositeAtom(
            span_id,
            merge_runs(Run(child, 1) for child in children),
            length,
            CHUNK_MODALITY,
            "span",
        )
    )
    return StoredAtom(span_id, length)


def _batched(chunks: Iterator[Chunk]) -> Iterator[list[LeafAtom]]:
    batch: list[LeafAtom] = []
    size = 0
    for chunk in chunks:
        leaf = LeafAtom(chunk.digest, chunk.data, CHUNK_MODALITY, CHUNK_SUBTYPE)
        batch.append(leaf)
        size += len(leaf.data)
        if size >= _LEAF_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _spans(size: int, model: ModelDescription | None) -> Iterator[tuple[int, int]]:
    """Byte ranges covering [0, size): tensors on their own, the gaps between them as spans."""
    cursor = 0
    tensors = (
        []
        if model is None
        else sorted(
            (t.offset, t.length) for t in model.tensors if t.offset is not None and t.length > 0
        )
    )
    for offset, length in tensors:
        if offset > cursor:
            yield cursor, offset - cursor
        yield offset, length
        cursor = offset + length
    if cursor < size or size == 0:
        yield cursor, size - cursor


def _span(segment: TextSegment) -> tuple[int, int]:
    assert segment.span is not None
    return segment.span


def _text_leaf(data: bytes, segment: TextSegment, subtype: str) -> LeafAtom:
    metadata: dict[str, JsonValue] = {"kind": segment.kind, **dict(segment.metadata)}
    return LeafAtom(hashlib.sha256(data).digest(), data, "text", subtype, segment.text, metadata)


def tiles_file(segments: Sequence[TextSegment], size: int) -> bool:
    """True when the segments' spans cover the file exactly, in order."""
    cursor = 0
    for segment in segments:
        if segment.span is None or segment.span[0] != cursor:
            return False
        cursor = segment.span[1]
    return cursor == size and bool(segments)
