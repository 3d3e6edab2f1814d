"""Reading a file given as a search example (`search --like FILE`): its modality and bytes."""

from __future__ import annotations

from pathlib import Path

from hartonomous.ingest.extractors import ExtractionError, extract
from hartonomous.ingest.paths import named_as
from hartonomous.search.service import Example, SearchError


def read_example(path: Path, name: str | None = None) -> Example:
    """The file as a search example, named ``name`` (default: the path) in the Example and in
    messages; SearchError naming it when it cannot be read."""
    label = str(path) if name is None else name
    try:
        extraction = extract(path)
        data = path.read_bytes()
    except ExtractionError as exc:
        # Extractors (Pillow, soundfile) may quote the path: a server's own spool path is not
        # the caller's business, so it is shown as the name the caller gave.
        raise SearchError(f"{label}: {named_as(str(exc), path, label)}") from None
    except OSError as exc:
        raise SearchError(f"{label}: {exc.strerror or exc}") from None
    return Example(label, extraction.modality, data)
