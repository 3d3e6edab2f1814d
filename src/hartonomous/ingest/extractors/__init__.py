"""Per-modality content extractors: pure functions from a file to what it is and contains.

``extract(path)`` sniffs the file (magic bytes first, extension second) and returns an
``Extraction``: modality, subtype, format metadata, text segments and derived media. Nothing is
stored here; a file that cannot be extracted raises ``ExtractionError``.
"""

from hartonomous.ingest.extractors.dispatch import extract
from hartonomous.ingest.extractors.model import (
    DerivedMedia,
    Extraction,
    ExtractionError,
    TextSegment,
)

__all__ = [
    "DerivedMedia",
    "Extraction",
    "ExtractionError",
    "TextSegment",
    "extract",
]
