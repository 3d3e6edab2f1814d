"""Plain-text formats: decoding, classification and paragraph segments that tile the file.

Decoding policy (in this order):

1. a UTF-32 or UTF-16 byte-order mark decodes with that codec;
2. otherwise strict UTF-8 (a UTF-8 BOM is kept as U+FEFF in the first segment, so every
   segment's UTF-8 bytes are exactly the file's bytes);
3. otherwise strict Windows-1252, the usual encoding of legacy Western text files.

Text that still contains control characters other than tab, line breaks, form feed, vertical
tab and escape (ANSI colours in logs) is not text: the caller stores it as opaque binary. Only
UTF-8 text gets byte spans; other encodings re-encode differently, so their spans are ``None``.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from hartonomous.ingest.extractors import structured
from hartonomous.ingest.extractors.model import Extraction, TextSegment
from hartonomous.json_types import JsonValue

# Larger "text" is stored as opaque binary: segmenting it would hold several copies in memory.
MAX_TEXT_BYTES = 64 * 1024 * 1024
# A paragraph larger than this is cut at line breaks (or inside a huge line) into fragments, so a
# blank-line-free log or minified JSON does not become one enormous atom.
MAX_SEGMENT_BYTES = 64 * 1024

_BOM_CODECS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 LE starts with the UTF-16 LE mark, so it is tested first.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_NOT_TEXT = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_LINE_BREAK = r"(?:\r\n|\n|\r)"
# A paragraph ends after its line break and every blank (whitespace-only) line that follows.
_SEPARATOR = re.compile(rf"{_LINE_BREAK}(?:[ \t\f\v]*{_LINE_BREAK})+")

_SUFFIX_SUBTYPES = {
    ".txt": "plain",
    ".text": "plain",
    ".md": "markdown",
    ".markdown": "markdown",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".xml": "xml",
    ".log": "log",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}


@dataclass(frozen=True)
class DecodedText:
    """Decoded file text; ``exact`` when its UTF-8 encoding is byte-identical to the file."""

    text: str
    encoding: str
    exact: bool
    bom: bool


def decode_text(data: bytes) -> DecodedText | None:
    """Decode ``data`` by the policy in the module docstring; ``None`` when it is not text."""
    for bom, encoding in _BOM_CODECS:
        if data.startswith(bom):
            return _decoded(data, encoding, exact=False, bom=True)
    utf8 = _decoded(data, "utf-8", exact=True, bom=data.startswith(codecs.BOM_UTF8))
    return utf8 or _decoded(data, "cp1252", exact=False, bom=False)


def may_be_text(head: bytes) -> bool:
    """False when the first bytes already rule text out: a NUL outside UTF-16/32 text."""
    return b"\x00" not in head or head.startswith(tuple(bom for bom, _ in _BOM_CODECS))


def _decoded(data: bytes, encoding: str, *, exact: bool, bom: bool) -> DecodedText | None:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    if _NOT_TEXT.search(text):
        return None
    return DecodedText(text, encoding, exact, bom)


def classify(text: str, suffix: str) -> str:
    """The text subtype: HTML and XML by their opening markup first, then by extension."""
    opening = text.lstrip("\ufeff \t\r\n")[:1024].lower()
    if opening.startswith(("<!doctype html", "<html")):
        return "html"
    if opening.startswith("<?xml"):
        return "html" if "<html" in opening else "xml"
    return _SUFFIX_SUBTYPES.get(suffix.lower(), "plain")


def extract_text(data: bytes, decoded: DecodedText, subtype: str) -> Extraction:
    """Paragraph segments plus format metadata for a plain-text ``subtype`` (not HTML)."""
    metadata: dict[str, JsonValue] = {
        "encoding": decoded.encoding,
        "bom": decoded.bom,
        "line_count": len(decoded.text.splitlines()),
    }
    metadata.update(structured.describe(subtype, decoded.text, data))
    segments = split_paragraphs(decoded.text, exact=decoded.exact, markdown=subtype == "markdown")
    return Extraction("text", subtype, metadata, tuple(segments), ())


def split_paragraphs(text: str, *, exact: bool, markdown: bool = False) -> list[TextSegment]:
    """Cut ``text`` into paragraph segments whose concatenation is exactly ``text``.

    Each paragraph keeps its trailing blank lines, so identical paragraphs separated the same
    way are identical atoms across documents. With ``exact``, spans are UTF-8 byte offsets.
    """
    segments: list[TextSegment] = []
    offset = 0
    for paragraph in _paragraphs(text):
        parts = _bounded(paragraph)
        for index, part in enumerate(parts):
            size = len(part.encode("utf-8"))
            span = (offset, offset + size) if exact else None
            offset += size
            if len(parts) > 1:
                segments.append(TextSegment(part, "fragment", span, {"part": index}))
            elif markdown and (heading := structured.markdown_heading(part.strip())):
                segments.append(TextSegment(part, "heading", span, {"level": heading[0]}))
            else:
                segments.append(TextSegment(part, "paragraph", span, {}))
    return segments


def _paragraphs(text: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _SEPARATOR.finditer(text):
        pieces.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    # Blank lines opening the file join the first paragraph and trailing spaces join the last,
    # so no segment is whitespace only (unless the whole file is).
    merged: list[str] = []
    leading = ""
    for piece in pieces:
        if piece.strip():
            merged.append(leading + piece)
            leading = ""
        elif merged:
            merged[-1] += piece
        else:
            leading += piece
    if leading:
        merged.append(leading)
    return merged


def _bounded(paragraph: str) -> list[str]:
    if len(paragraph.encode("utf-8")) <= MAX_SEGMENT_BYTES:
        return [paragraph]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for line in paragraph.splitlines(keepends=True):
        for chunk in _cut_line(line):
            chunk_size = len(chunk.encode("utf-8"))
            if current and size + chunk_size > MAX_SEGMENT_BYTES:
                parts.append("".join(current))
                current, size = [], 0
            current.append(chunk)
            size += chunk_size
    parts.append("".join(current))
    return parts


def _cut_line(line: str) -> list[str]:
    data = line.encode("utf-8")
    if len(data) <= MAX_SEGMENT_BYTES:
        return [line]
    chunks: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + MAX_SEGMENT_BYTES, len(data))
        # Never cut inside a multi-byte character: back off over continuation bytes.
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        chunks.append(data[start:end].decode("utf-8"))
        start = end
    return chunks
