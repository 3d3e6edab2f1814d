"""PDF: one ``page`` segment per page that has text, plus the document information.

Read with pypdf. Pages without extractable text (scans) get no segment; their count is in the
metadata. Encrypted files open when the empty user password decrypts them, whatever the
algorithm (RC4 or AES, through pypdf's ``crypto`` extra); others fail with "encrypted PDF: a
password is required".

The document information dictionary is description, not content: a field that does not parse
(a ``/CreationDate`` written as ``10/2/2024 01:48:09``, a title that is not a string, an /Info
that is not a dictionary) is left out and listed under ``unparsed_metadata`` with its raw value,
and the pages are read as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pypdf import DocumentInformation, PasswordType, PdfReader
from pypdf.errors import DependencyError, PyPdfError

from hartonomous.ingest.extractors.model import Extraction, ExtractionError, TextSegment
from hartonomous.json_types import JsonValue

# What pypdf raises for a metadata object it cannot parse or resolve.
_PARSE_ERRORS = (PyPdfError, AttributeError, KeyError, TypeError, ValueError)
# Output key -> information dictionary key.
_TEXT_FIELDS = {
    "title": "/Title",
    "author": "/Author",
    "subject": "/Subject",
    "creator": "/Creator",
    "producer": "/Producer",
}
# Output key -> (pypdf's parsed date, information dictionary key).
_DATE_FIELDS: dict[str, tuple[Callable[[DocumentInformation], datetime | None], str]] = {
    "created": (lambda info: info.creation_date, "/CreationDate"),
    "modified": (lambda info: info.modification_date, "/ModDate"),
}


def extract_pdf(path: Path) -> Extraction:
    """Per-page text and document information of the PDF at ``path``."""
    try:
        reader = PdfReader(path)
        encrypted = reader.is_encrypted
        if encrypted:
            _decrypt(reader)
        pages = [page.extract_text() or "" for page in reader.pages]
        info, unparsed = _information(reader)
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
        **info,
    }
    if unparsed:
        metadata["unparsed_metadata"] = unparsed
    return Extraction("document", "pdf", metadata, segments, ())


def _decrypt(reader: PdfReader) -> None:
    try:
        opened = reader.decrypt("")
    except DependencyError as exc:
        # Only if the crypto extra is missing from the installation.
        raise ExtractionError(f"encrypted PDF: cannot decrypt here: {exc}") from exc
    except NotImplementedError as exc:
        # e.g. the public-key security handler (/Adobe.PubSec): a certificate, not a password.
        raise ExtractionError(f"encrypted PDF: unsupported encryption: {exc}") from exc
    if opened == PasswordType.NOT_DECRYPTED:
        raise ExtractionError("encrypted PDF: a password is required")


def _information(reader: PdfReader) -> tuple[dict[str, JsonValue], dict[str, JsonValue]]:
    """The fields that parse, and the raw text of those that do not (both without ``None``)."""
    try:
        information = reader.metadata
    except _PARSE_ERRORS as exc:  # /Info that is a broken reference, not a dictionary, …
        return {}, {"info": f"{type(exc).__name__}: {exc}"}
    if information is None:
        return {}, {}
    parsed: dict[str, JsonValue] = {}
    unparsed: dict[str, JsonValue] = {}
    for key, name in _TEXT_FIELDS.items():
        raw = _raw(information, name)
        if raw is None:
            continue
        if isinstance(raw, str):
            parsed[key] = raw
        else:
            unparsed[key] = str(raw)
    for key, (read, name) in _DATE_FIELDS.items():
        try:
            moment = read(information)
        except _PARSE_ERRORS:  # ValueError for a date not in PDF's D:YYYYMMDD… form
            raw = _raw(information, name)
            if raw is not None:
                unparsed[key] = str(raw)
            continue
        if moment is not None:
            parsed[key] = moment.isoformat()
    return parsed, unparsed


def _raw(information: DocumentInformation, name: str) -> object:
    try:
        return information.get(name)
    except _PARSE_ERRORS as exc:  # a field whose indirect object cannot be resolved
        return f"{type(exc).__name__}: {exc}"
