"""DOCX: body paragraphs and table cells in document order, with headings and core properties.

Read with python-docx. Paragraphs in a ``Heading N`` style become ``heading`` segments (level N),
the ``Title`` style a ``title`` segment, other non-empty paragraphs ``paragraph`` segments, and
each table cell a ``cell`` segment. Headers, footers, comments and nested tables are left out.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from docx import Document
from docx.table import Table
from docx.text.paragraph import Paragraph

from hartonomous.ingest.extractors.model import Extraction, ExtractionError, TextSegment
from hartonomous.json_types import JsonValue

_HEADING_STYLE = "Heading "


def extract_docx(path: Path) -> Extraction:
    """Paragraph, heading and cell segments plus core properties of the DOCX at ``path``."""
    try:
        document = Document(str(path))
        segments: list[TextSegment] = []
        tables = 0
        for block in document.iter_inner_content():
            if isinstance(block, Paragraph):
                segment = _paragraph(block)
                if segment is not None:
                    segments.append(segment)
            else:
                segments.extend(_cells(block, tables))
                tables += 1
        properties = document.core_properties
        info: dict[str, JsonValue] = {
            "title": properties.title or None,
            "author": properties.author or None,
            "subject": properties.subject or None,
            "created": _iso(properties.created),
            "modified": _iso(properties.modified),
        }
    except Exception as exc:
        # A damaged package surfaces as zip, XML, KeyError or python-docx's own errors.
        raise ExtractionError(f"unreadable or corrupt DOCX: {type(exc).__name__}: {exc}") from exc
    metadata: dict[str, JsonValue] = {
        "paragraph_count": sum(1 for segment in segments if segment.kind != "cell"),
        "table_count": tables,
        "headings": [
            {"level": segment.metadata["level"], "text": segment.text}
            for segment in segments
            if segment.kind == "heading"
        ],
        **{key: value for key, value in info.items() if value is not None},
    }
    return Extraction("document", "docx", metadata, tuple(segments), ())


def _paragraph(paragraph: Paragraph) -> TextSegment | None:
    text = paragraph.text.strip()
    if not text:
        return None
    style = paragraph.style.name if paragraph.style is not None else None
    if style == "Title":
        return TextSegment(text, "title", None, {})
    if style and style.startswith(_HEADING_STYLE) and style[len(_HEADING_STYLE) :].isdigit():
        return TextSegment(text, "heading", None, {"level": int(style[len(_HEADING_STYLE) :])})
    return TextSegment(text, "paragraph", None, {})


def _cells(table: Table, table_index: int) -> list[TextSegment]:
    segments: list[TextSegment] = []
    # python-docx repeats a merged cell at every grid position it spans; its XML element is
    # shared, so emit it once. The set holds the elements (not their ids) to keep them alive,
    # which makes lxml hand back the same proxy object for the same node.
    seen: set[object] = set()
    for row_index, row in enumerate(table.rows):
        for column_index, cell in enumerate(row.cells):
            if cell._tc in seen:
                continue
            seen.add(cell._tc)
            text = cell.text.strip()
            if text:
                position: dict[str, JsonValue] = {
                    "table": table_index,
                    "row": row_index,
                    "column": column_index,
                }
                segments.append(TextSegment(text, "cell", None, position))
    return segments


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
