"""What an extractor returns: the file's modality, its metadata, text segments and derived media.

Extractors never store anything. The caller keeps the file's own bytes (content-defined chunks)
and turns segments and derived media into atoms of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hartonomous.json_types import JsonValue


class ExtractionError(ValueError):
    """A file that cannot be extracted; the message names the problem, the caller adds the path."""


@dataclass(frozen=True)
class TextSegment:
    """One unit of text worth its own atom.

    ``kind`` is one of:

    - ``"paragraph"``: a block of text (plain-text formats, HTML, DOCX);
    - ``"fragment"``: a piece of a plain-text paragraph too large for one segment;
    - ``"heading"``: a heading; ``metadata["level"]`` is 1-6;
    - ``"title"``: a DOCX paragraph in the Title style;
    - ``"page"``: the text of one PDF page; ``metadata["page"]`` is 1-based;
    - ``"cell"``: the text of one DOCX table cell (``table``, ``row``, ``column``, 0-based).

    ``span`` is the byte range ``file[start:end]`` whose bytes are exactly ``text`` encoded as
    UTF-8. It is set only for plain-text formats stored as UTF-8, where the spans of all segments
    tile the file; derived text (HTML, PDF, DOCX, other encodings) has ``None``.
    """

    text: str
    kind: str
    span: tuple[int, int] | None
    metadata: Mapping[str, JsonValue]


@dataclass(frozen=True)
class DerivedMedia:
    """Media decoded out of the file, e.g. a video keyframe (PNG) or its audio track (FLAC)."""

    modality: str
    subtype: str
    data: bytes
    metadata: Mapping[str, JsonValue]


@dataclass(frozen=True)
class Extraction:
    """What a file is (modality, subtype, metadata) and what was derived from it."""

    modality: str
    subtype: str
    metadata: Mapping[str, JsonValue]
    segments: Sequence[TextSegment]
    derived: Sequence[DerivedMedia]
