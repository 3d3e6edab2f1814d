"""HTML: main-content text as heading and paragraph segments, plus title, headings and links.

Parsed with lxml's HTML parser (libxml2), which repairs broken markup the way browsers do.
The main content is the first ``<article>``, else ``<main>``, else ``role="main"``, else
``<body>``; scripts, styles and other non-content elements are skipped. Links come from the
whole document, as written (relative ``href`` values stay relative: a file has no base URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree
from lxml import html as lxml_html

from hartonomous.ingest.extractors.model import Extraction, ExtractionError, TextSegment
from hartonomous.ingest.extractors.text import DecodedText
from hartonomous.json_types import JsonValue

_SKIPPED = frozenset(
    {"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object"}
)
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hr", "html", "li", "main", "nav", "ol", "p", "section", "summary", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_MAIN_CONTENT = ("//article", "//main", "//*[@role='main']", "//body")


@dataclass
class _Blocks:
    """Collects inline text until a block boundary turns it into a segment."""

    segments: list[TextSegment] = field(default_factory=list)
    inline: list[str] = field(default_factory=list)

    def add(self, text: str | None) -> None:
        if text:
            # Source line breaks are just whitespace in HTML; <br> adds the real ones.
            self.inline.append(text.replace("\r", " ").replace("\n", " "))

    def line_break(self) -> None:
        self.inline.append("\n")

    def flush(self) -> None:
        lines = (" ".join(line.split()) for line in "".join(self.inline).split("\n"))
        text = "\n".join(line for line in lines if line)
        self.inline.clear()
        if text:
            self.segments.append(TextSegment(text, "paragraph", None, {}))

    def emit(self, kind: str, text: str, metadata: dict[str, JsonValue]) -> None:
        self.flush()
        if text:
            self.segments.append(TextSegment(text, kind, None, metadata))


def extract_html(decoded: DecodedText) -> Extraction:
    """Segments and metadata of an HTML document already decoded (``text.decode_text``)."""
    # libxml2 gets UTF-8 whatever the file's encoding: the decoder already honoured the BOM,
    # the declaration or the detected encoding, and the parser must not second-guess it.
    parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=True)
    try:
        document = lxml_html.document_fromstring(decoded.text.encode("utf-8"), parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise ExtractionError(f"unparseable HTML: {exc}") from exc
    main = next(
        (found[0] for query in _MAIN_CONTENT if (found := _find(document, query))), document
    )
    blocks = _Blocks()
    _walk(main, blocks)
    blocks.flush()
    segments = tuple(blocks.segments)
    metadata: dict[str, JsonValue] = {
        **decoded.metadata(),
        "title": _first_text(document, "//title"),
        "description": _first_attribute(document, "//meta[@name='description']", "content"),
        "language": _first_attribute(document, "/html", "lang"),
        "main_element": main.tag if isinstance(main.tag, str) else None,
        "headings": [
            {"level": segment.metadata["level"], "text": segment.text}
            for segment in segments
            if segment.kind == "heading"
        ],
        "links": _links(document),
        "word_count": sum(len(segment.text.split()) for segment in segments),
    }
    return Extraction("document", "html", metadata, segments, ())


def _walk(element: lxml_html.HtmlElement, blocks: _Blocks) -> None:
    tag = element.tag.lower() if isinstance(element.tag, str) else ""
    if tag in _SKIPPED or not tag:
        # Comments and processing instructions carry no text, but their tail does.
        blocks.add(element.tail)
        return
    if tag in _HEADINGS:
        text = " ".join(element.text_content().split())
        blocks.emit("heading", text, {"level": _HEADINGS[tag]})
    elif tag == "pre":
        # Preformatted text keeps its own line breaks and spacing.
        blocks.emit("paragraph", element.text_content().strip("\r\n"), {})
    elif tag == "br":
        blocks.line_break()
    else:
        is_block = tag in _BLOCKS
        if is_block:
            blocks.flush()
        blocks.add(element.text)
        for child in element:
            _walk(child, blocks)
        if is_block:
            blocks.flush()
    blocks.add(element.tail)


def _find(document: lxml_html.HtmlElement, query: str) -> list[lxml_html.HtmlElement]:
    found = document.xpath(query)
    if not isinstance(found, list):
        return []
    return [item for item in found if isinstance(item, lxml_html.HtmlElement)]


def _first_text(document: lxml_html.HtmlElement, query: str) -> str | None:
    found = _find(document, query)
    text = " ".join(found[0].text_content().split()) if found else ""
    return text or None


def _first_attribute(document: lxml_html.HtmlElement, query: str, name: str) -> str | None:
    found = _find(document, query)
    value = found[0].get(name) if found else None
    return value.strip() or None if value is not None else None


def _links(document: lxml_html.HtmlElement) -> list[JsonValue]:
    return [
        {
            "href": (anchor.get("href") or "").strip(),
            "text": " ".join(anchor.text_content().split()),
        }
        for anchor in _find(document, "//a[@href]")
    ]
