"""Format metadata for structured text (markdown, CSV, JSON, YAML, XML).

An invalid structured file is still text and is still ingested: its metadata says
``{"valid": false, "parse_error": ...}`` instead of the file failing, because its bytes are
intact and searchable; only the structure is wrong.
"""

from __future__ import annotations

import csv
import io
import json
import re

import yaml
from lxml import etree

from hartonomous.json_types import JsonValue

# csv.Sniffer is regex-heavy; a few KiB are plenty to see the delimiter.
_CSV_SAMPLE_CHARS = 8192
_CSV_DELIMITERS = ",;\t|"

_ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


def describe(subtype: str, text: str, data: bytes) -> dict[str, JsonValue]:
    """Metadata for ``subtype``; ``text`` is the decoded file, ``data`` its raw bytes."""
    body = text.removeprefix("\ufeff")
    if subtype == "markdown":
        return {"headings": markdown_headings(body)}
    if subtype == "csv":
        return _csv(body)
    if subtype == "json":
        return _json(body)
    if subtype == "yaml":
        return _yaml(body)
    if subtype == "xml":
        return _xml(data)
    return {}


def markdown_heading(line: str) -> tuple[int, str] | None:
    """Level and text of an ATX heading line (``## Title``), else ``None``."""
    match = _ATX_HEADING.fullmatch(line)
    if match is None:
        return None
    return len(match.group(1)), (match.group(2) or "").strip()


def markdown_headings(text: str) -> list[JsonValue]:
    """ATX and setext headings outside fenced code blocks, in order."""
    headings: list[JsonValue] = []
    fence: str | None = None
    previous = ""
    for line in text.splitlines():
        opening = _FENCE.match(line)
        if fence is not None:
            if opening is not None and opening.group(1).startswith(fence):
                fence = None
            continue
        if opening is not None:
            fence = opening.group(1)
            previous = ""
            continue
        atx = markdown_heading(line)
        underline = _SETEXT_UNDERLINE.fullmatch(line)
        if atx is not None:
            headings.append({"level": atx[0], "text": atx[1]})
        elif underline is not None and previous.strip():
            level = 1 if underline.group(1).startswith("=") else 2
            headings.append({"level": level, "text": previous.strip()})
        # A heading line cannot be the text of a setext heading below it.
        previous = "" if atx is not None or underline is not None else line
    return headings


def _csv(text: str) -> dict[str, JsonValue]:
    sample = text[:_CSV_SAMPLE_CHARS]
    sniffer = csv.Sniffer()
    try:
        delimiter = sniffer.sniff(sample, delimiters=_CSV_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    rows = 0
    columns = 0
    first: list[str] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True):
            if rows == 0:
                first = row
            rows += 1
            columns = max(columns, len(row))
        has_header = rows > 1 and sniffer.has_header(sample)
    except csv.Error as exc:
        return {"valid": False, "parse_error": str(exc), "delimiter": delimiter}
    header: list[JsonValue] | None = list(first) if has_header else None
    return {
        "valid": True,
        "delimiter": delimiter,
        "rows": rows,
        "columns": columns,
        "header": header,
    }


def _json(text: str) -> dict[str, JsonValue]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and the int-digit limit; deep nesting recurses.
        return {"valid": False, "parse_error": str(exc)}
    return {"valid": True, "top_level": _json_kind(value)}


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _yaml(text: str) -> dict[str, JsonValue]:
    try:
        # safe_load builds aliases by reference, so an alias bomb does not expand in memory.
        documents = sum(1 for _ in yaml.safe_load_all(text))
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        return {"valid": False, "parse_error": str(exc)}
    return {"valid": True, "documents": documents}


def _xml(data: bytes) -> dict[str, JsonValue]:
    # No entity expansion, DTD loading or network access: the file is untrusted input.
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    try:
        root = etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        return {"valid": False, "parse_error": str(exc)}
    name = etree.QName(root)
    return {"valid": True, "root": name.localname, "namespace": name.namespace}
