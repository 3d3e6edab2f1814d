"""Plain-text formats: decoding, classification and paragraph segments that tile the file.

Decoding policy (in this order; the first that decodes strictly wins):

1. a byte-order mark: UTF-32 or UTF-16 decode with that codec; a UTF-8 BOM means UTF-8. The
   mark is an encoding signature, not text: it is never part of the decoded text (a file that
   is only a mark has empty text), while the first segment's byte span still starts at 0 and
   covers it, so the segments' bytes remain exactly the file's. When the bytes after the mark
   do not decode with it, they are detected (rule 4) and ``bom`` is still recorded;
2. the encoding the document declares in its first 4 KiB (unless the file is valid UTF-8 with
   non-ASCII characters: pages declaring ISO-8859-1 over UTF-8 are common, while legacy text
   is practically never valid UTF-8): an XML declaration
   (``<?xml … encoding="…"?>``), ``<meta charset="…">`` or ``<meta http-equiv="Content-Type"
   content="…; charset=…">``; labels are read as the WHATWG Encoding Standard reads them
   (``iso-8859-1`` and ``ascii`` mean Windows-1252, ``shift_jis`` means Windows-31J, …);
3. strict UTF-8;
4. the encoding chardet detects among those of the modern web (Windows and ISO code pages,
   KOI8, the CJK encodings; not DOS, Mac or mainframe ones); when Windows-1252 gives the same
   text, that more common name is recorded.

The metadata records ``encoding`` (the Python codec used), ``encoding_source`` (``bom``,
``declared``, ``utf-8`` or ``detected``) and ``declared_encoding`` (the label as written, when
there is one, even if it did not decode the file).

Text that still contains control characters other than tab, line breaks, form feed, vertical
tab and escape (ANSI colours in logs) is not text: the caller stores it as opaque binary. Only
UTF-8 text gets byte spans; other encodings re-encode differently, so their spans are ``None``.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Literal

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


EncodingSource = Literal["bom", "declared", "utf-8", "detected"]

# Far enough to pass the long <head> of real pages (WHATWG's prescan stops at 1 KiB).
_DECLARATION_BYTES = 4096
_XML_DECLARATION = re.compile(
    rb"""^\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']([A-Za-z][\w.:-]*)["']""", re.IGNORECASE
)
_META = re.compile(rb"<meta\b[^>]*>", re.IGNORECASE)
# Matches both <meta charset="x"> and the content="text/html; charset=x" of http-equiv.
_META_CHARSET = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z][\w.:-]*)""", re.IGNORECASE)
# WHATWG Encoding Standard: legacy labels decode as the superset browsers use.
_WHATWG_SUPERSETS = {
    "iso8859_1": "cp1252",
    "ascii": "cp1252",
    "iso8859_9": "cp1254",
    "iso8859_11": "cp874",
    "tis_620": "cp874",
    "shift_jis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
}
# Python codecs that are no character set a document may declare (WHATWG forbids UTF-7 too).
_NOT_DECLARABLE = frozenset(
    {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "utf_7"}
)
# Labels the Encoding Standard knows that Python's codec registry does not.
_WHATWG_LABELS = {"windows-31j": "cp932", "x-sjis": "cp932", "x-gbk": "gb18030"}


@dataclass(frozen=True)
class DecodedText:
    """Decoded file text; ``exact`` when its UTF-8 encoding is byte-identical to the file
    after its first ``signature_bytes`` (a UTF-8 byte-order mark, which is not text).

    ``encoding`` is the Python codec name used, ``source`` how it was chosen and ``declared``
    the label the document itself declares (``None`` when it declares none).
    """

    text: str
    encoding: str
    exact: bool
    bom: bool
    source: EncodingSource = "utf-8"
    declared: str | None = None
    signature_bytes: int = 0

    def metadata(self) -> dict[str, JsonValue]:
        """The encoding facts every text-like extraction records."""
        found: dict[str, JsonValue] = {
            "encoding": self.encoding,
            "encoding_source": self.source,
            "bom": self.bom,
        }
        if self.declared is not None:
            found["declared_encoding"] = self.declared
        return found


def decode_text(data: bytes) -> DecodedText | None:
    """Decode ``data`` by the policy in the module docstring; ``None`` when it is not text."""
    for bom, encoding in (*_BOM_CODECS, (codecs.BOM_UTF8, "utf-8-sig")):
        if data.startswith(bom):
            found = _decoded(data, encoding, bom=True, source="bom")
            # A mark the bytes after it do not follow (a UTF-8 mark before Windows-1252 text,
            # as editors and concatenation leave) is not the encoding: they are detected.
            return found or _detected(data[len(bom) :], None, bom=True)
    label = declared_encoding(data[:_DECLARATION_BYTES])
    codec = _codec(label) if label is not None else None
    utf8 = _decoded(data, "utf-8", bom=False, source="utf-8", declared=label)
    found = None
    if codec is not None and (utf8 is None or data.isascii()):
        found = _decoded(data, codec, bom=False, source="declared", declared=label)
    return found or utf8 or _detected(data, label)


def declared_encoding(head: bytes) -> str | None:
    """The encoding label an XML declaration or an HTML ``<meta>`` in ``head`` names, if any."""
    xml = _XML_DECLARATION.match(head)
    if xml is not None:
        return xml.group(1).decode("ascii")
    for tag in _META.finditer(head):
        charset = _META_CHARSET.search(tag.group(0))
        if charset is not None:
            return charset.group(1).decode("ascii")
    return None


def _codec(label: str) -> str | None:
    """The Python codec for a declared label, or ``None`` for one no codec knows."""
    try:
        name = codecs.lookup(_WHATWG_LABELS.get(label.lower(), label)).name
    except LookupError:
        return None
    name = name.replace("-", "_")
    if name in _NOT_DECLARABLE:
        return None
    if name.startswith(("utf_16", "utf_32")):
        # Without a byte-order mark the bytes just read were ASCII-compatible (WHATWG: UTF-8).
        return "utf-8"
    return _WHATWG_SUPERSETS.get(name, codecs.lookup(name).name)


def _detected(data: bytes, declared: str | None, *, bom: bool = False) -> DecodedText | None:
    import chardet

    # The encodings of today's files and web pages (UTF-*, Windows and ISO code pages, KOI8,
    # the CJK ones): also guessing DOS, Mac and mainframe code pages turned Western text with
    # markup into Mac-Turkish in trials.
    guess = chardet.detect(data, encoding_era=chardet.EncodingEra.MODERN_WEB)["encoding"]
    codec = _codec(guess) if guess is not None else None
    if codec is None:
        return None
    found = _decoded(data, codec, bom=bom, source="detected", declared=declared)
    if found is not None and codec != "cp1252":
        # Short Western text is often named after a sibling code page that decodes it to the
        # same characters; the common name is the more useful record.
        western = _decoded(data, "cp1252", bom=bom, source="detected", declared=declared)
        if western is not None and western.text == found.text:
            return western
    return found


def may_be_text(head: bytes) -> bool:
    """False when the first bytes already rule text out: a NUL outside UTF-16/32 text."""
    return b"\x00" not in head or head.startswith(tuple(bom for bom, _ in _BOM_CODECS))


def _decoded(
    data: bytes, encoding: str, *, bom: bool, source: EncodingSource, declared: str | None = None
) -> DecodedText | None:
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    if _NOT_TEXT.search(text):
        return None
    if encoding == "utf-8-sig":
        # Python's utf-8-sig drops the mark; what is recorded and spans are plain UTF-8.
        return DecodedText(text, "utf-8", True, bom, source, declared, len(codecs.BOM_UTF8))
    # The utf-16/utf-32 codecs consume the mark already; a second U+FEFF is text (ZWNBSP).
    return DecodedText(text, encoding, encoding == "utf-8", bom, source, declared)


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
        **decoded.metadata(),
        "line_count": len(decoded.text.splitlines()),
    }
    metadata.update(structured.describe(subtype, decoded.text, data))
    segments = split_paragraphs(
        decoded.text,
        exact=decoded.exact,
        markdown=subtype == "markdown",
        signature_bytes=decoded.signature_bytes,
    )
    return Extraction("text", subtype, metadata, tuple(segments), ())


def split_paragraphs(
    text: str, *, exact: bool, markdown: bool = False, signature_bytes: int = 0
) -> list[TextSegment]:
    """Cut ``text`` into paragraph segments whose concatenation is exactly ``text``.

    Each paragraph keeps its trailing blank lines, so identical paragraphs separated the same
    way are identical atoms across documents. With ``exact``, spans are UTF-8 byte offsets
    into the file; the first span also covers the ``signature_bytes`` of a byte-order mark
    that precedes the text in the file (its bytes, not its text).
    """
    segments: list[TextSegment] = []
    offset = 0
    for paragraph in _paragraphs(text):
        parts = _bounded(paragraph)
        for index, part in enumerate(parts):
            size = len(part.encode("utf-8")) + (0 if segments else signature_bytes)
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
