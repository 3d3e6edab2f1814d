"""PDF: one ``page`` segment per page that has text, plus the document information.

Read with pypdf. Pages without extractable text (scans) get no segment; their count is in the
metadata. Encrypted files open only when the empty user password decrypts them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pypdf import PdfReader

from hartonomous.ingest.extractors.model import Extraction, ExtractionError, TextSegment
from hartonomous.json_types import JsonValue


def extract_pdf(path: Path) -> Extraction:
    """Per-page text and document information of the PDF at ``path``."""
    try:
        reader = PdfReader(path)
        encrypted = reader.is_encrypted
        if encrypted and not reader.decrypt(""):
            raise ExtractionError("encrypted PDF: a password is required")
        pages = [page.extract_text() or "" for page in reader.pages]
        information = reader.metadata
        info: dict[str, JsonValue] = {
            "title": information.title if information else None,
            "author": information.author if information else None,
            "subject": information.subject if information else None,
            "creator": information.creator if information else None,
            "producer": information.producer if information else None,
            "created": _iso(information.creation_date if information else None),
            "modified": _iso(information.modification_date if information else None),
        }
    except ExtractionError:
        raise
    except Exception as exc:
        # pypdf reports damaged files with its own errors but also with KeyError, TypeError,
        # ValueError and friends from deep inside the object parser; all mean "corrupt PDF".
        raise ExtractionError(f"unreadable or corrupt PDF: {type(exc).__name__}: {exc}") from exc
    segments = tuple(
        TextSegment(text, "page", None, {"page": number})
        for number, text in enumerate(pages, start=1)
        if text.strip()
    )
    metadata: dict[str, JsonValue] = {
        "page_count": len(pages),
        "pages_without_text": len(pages) - len(segments),
        "encrypted": encrypted,
        **{key: value for key, value in info.items() if value is not None},
    }
    return Extraction("document", "pdf", metadata, segments, ())


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
