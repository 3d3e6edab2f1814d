"""``extract``: check the path, sniff the content, hand the file to its family's extractor."""

from __future__ import annotations

import importlib
import stat
from collections.abc import Callable
from pathlib import Path

from hartonomous.ingest.extractors.model import Extraction, ExtractionError
from hartonomous.ingest.extractors.sniff import HEAD_BYTES, Family, Sniffed, sniff
from hartonomous.ingest.extractors.text import (
    MAX_TEXT_BYTES,
    classify,
    decode_text,
    extract_text,
    may_be_text,
)
from hartonomous.json_types import JsonValue

# Looking at the start first avoids reading a large binary whole only to find it is not text.
_TEXT_PROBE_BYTES = 64 * 1024
# Each family's parser (pypdf, python-docx, Pillow, soundfile, lxml, ffmpeg) is imported on first
# use, so commands that never extract do not pay for loading them all.
_BY_FAMILY: dict[Family, tuple[str, str]] = {
    "pdf": ("pdf", "extract_pdf"),
    "docx": ("docx", "extract_docx"),
    "image": ("image", "extract_image"),
    "audio": ("audio", "extract_audio"),
}
_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def extract(path: Path) -> Extraction:
    """What the file at ``path`` is and what can be derived from it.

    Raises ``ExtractionError`` naming the problem (not the path: the caller adds it) for a
    missing, unreadable, special or empty file and for a file its format's reader rejects.
    """
    size = _regular_file_size(path)
    if size == 0:
        raise ExtractionError("empty file (0 bytes)")
    head = _read(path, HEAD_BYTES)
    found = sniff(path, head)
    if found.family == "text":
        # A file no longer than its head (most small text files) is not opened again.
        return _text_or_binary(path, size, head if len(head) == size else None)
    if found.family == "binary":
        return _binary(found, size)
    if found.family == "video":
        from hartonomous.ingest.extractors.video import extract_video

        return extract_video(path, found.subtype)
    module, function = _BY_FAMILY[found.family]
    extractor: Callable[[Path], Extraction] = getattr(
        importlib.import_module(f"hartonomous.ingest.extractors.{module}"), function
    )
    return extractor(path)


def _regular_file_size(path: Path) -> int:
    try:
        mode = path.stat()
    except OSError as exc:
        raise ExtractionError(f"cannot read file: {exc.strerror or exc}") from exc
    for is_type, name in _FILE_TYPES:
        if is_type(mode.st_mode):
            # Reading a named pipe would block until a writer appears; refuse instead.
            raise ExtractionError(f"not a regular file: it is {name}")
    return mode.st_size


def _read(path: Path, limit: int | None = None) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(limit) if limit is not None else stream.read()
    except OSError as exc:
        raise ExtractionError(f"cannot read file: {exc.strerror or exc}") from exc


def _text_or_binary(path: Path, size: int, whole: bytes | None = None) -> Extraction:
    """``whole``: the file's bytes when the caller has read all of them already."""
    unknown = Sniffed("binary", "octet-stream")
    if size > MAX_TEXT_BYTES:
        return _binary(unknown, size, note=f"not examined as text: over {MAX_TEXT_BYTES} bytes")
    probe = whole[:_TEXT_PROBE_BYTES] if whole is not None else _read(path, _TEXT_PROBE_BYTES)
    if not may_be_text(probe):
        return _binary(unknown, size)
    data = whole if whole is not None else _read(path)
    decoded = decode_text(data)
    if decoded is None:
        return _binary(unknown, size)
    subtype = classify(decoded.text, path.suffix)
    if subtype == "html":
        from hartonomous.ingest.extractors.html import extract_html

        return extract_html(decoded)
    return extract_text(data, decoded, subtype)


def _binary(found: Sniffed, size: int, note: str | None = None) -> Extraction:
    """An opaque file: its bytes are all there is, stored by the caller as chunks."""
    metadata: dict[str, JsonValue] = {"size_bytes": size}
    if note is not None:
        metadata["note"] = note
    return Extraction("binary", found.subtype, metadata, (), ())
