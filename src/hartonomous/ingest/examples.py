"""Reading a file given as a search example (`search --like FILE`): its modality and bytes."""

from __future__ import annotations

from pathlib import Path

from hartonomous.ingest.extractors import ExtractionError, extract
from hartonomous.search.service import Example, SearchError


def read_example(path: Path) -> Example:
    """The file as a search example; SearchError naming the file when it cannot be read."""
    try:
        extraction = extract(path)
        data = path.read_bytes()
    except ExtractionError as exc:
        raise SearchError(f"{path}: {exc}") from None
    except OSError as exc:
        raise SearchError(f"{path}: {exc.strerror or exc}") from None
    return Example(str(path), extraction.modality, data)
