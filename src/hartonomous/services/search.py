"""Search use cases: by text (hybrid, semantic or lexical) and by an example file.

The CLI's `search` and the API's `POST /v1/search` and `POST /v1/search/by-example` call these;
the search itself is `hartonomous.search.service.search` (modes, filters and their rules:
docs/search.md). Inputs are checked (``check_search``) before anything touches the database, so
a bad request costs no connection.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from hartonomous.db.tables.atoms import FILE_MODALITIES, SOURCE_TYPES
from hartonomous.embed.indexing import Embedders
from hartonomous.ingest.examples import read_example
from hartonomous.observability.metrics import SEARCH_SECONDS
from hartonomous.search.planner import MAX_K
from hartonomous.search.query import Filters
from hartonomous.search.service import (
    MAX_QUERY_CHARACTERS,
    SEARCH_MODES,
    Example,
    Query,
    SearchError,
    SearchHit,
    SearchMode,
    SearchResult,
    validate,
)
from hartonomous.search.service import search as _search
from hartonomous.services.platform import Platform

__all__ = [
    "FILE_MODALITIES",
    "MAX_EXAMPLE_BYTES",
    "MAX_K",
    "MAX_QUERY_CHARACTERS",
    "SEARCH_MODES",
    "SOURCE_TYPES",
    "Example",
    "Filters",
    "Query",
    "SearchError",
    "SearchHit",
    "SearchMode",
    "SearchResult",
    "check_search",
    "example_from_file",
    "search",
    "search_filters",
]

_UNSEARCHABLE = re.compile("[\x00\ud800-\udfff]")

MAX_EXAMPLE_BYTES = 32 * 1024 * 1024
"""Largest upload accepted as a search example (bytes, the whole request body): the example is
read whole into memory to be embedded, and an image or a sound to search by is far smaller."""


def search_filters(
    *,
    source_modality: str | None = None,
    source_type: str | None = None,
    held_since: datetime | None = None,
    held_until: datetime | None = None,
) -> Filters:
    """Search filters; a date/time without a time zone is taken as UTC (docs/search.md)."""
    return Filters(
        source_type=source_type,
        source_modality=source_modality,
        held_since=_utc(held_since),
        held_until=_utc(held_until),
    )


def example_from_file(path: Path, name: str | None = None) -> Example:
    """The file at ``path`` as a search example (image or audio), named ``name`` in messages.

    Raises ``SearchError`` (invalid input) when the file cannot be read or extracted.
    """
    return read_example(path, name)


def check_search(query: Query, k: int, mode: str, filters: Filters | None) -> SearchMode:
    """``mode`` as a SearchMode, or ``SearchError`` naming what cannot run as asked:
    k outside 1..MAX_K, no query or two, an empty or overlong query, a query holding NUL or a
    lone surrogate, an unknown mode, lexical search by example, since not before until, an
    unknown modality or source type."""
    if query.text is not None and (unsearchable := _UNSEARCHABLE.search(query.text)):
        # PostgreSQL text holds neither; the CLI meets lone surrogates as undecodable argv bytes.
        raise SearchError(
            f"the query holds U+{ord(unsearchable.group()):04X} at offset "
            f"{unsearchable.start()}: a NUL or lone surrogate is not searchable text"
        )
    return validate(query, k, mode, filters)


def search(
    platform: Platform,
    tenant_id: str,
    query: Query,
    k: int = 10,
    *,
    mode: str = "hybrid",
    filters: Filters | None = None,
    embedders: Embedders | None = None,
) -> SearchResult:
    """The ``k`` best atoms ``tenant_id`` may see for ``query``, best first.

    Raises ``SearchError`` (invalid input, see ``check_search``; also a text the model cannot
    see in semantic mode, an example that is neither image nor audio), ``UnknownTenantError``
    or ``TenantDisabledError``.
    """
    chosen = check_search(query, k, mode, filters)
    with SEARCH_SECONDS.labels(chosen).time():
        return _search(
            platform.engine,
            tenant_id,
            query,
            k,
            mode=chosen,
            filters=filters,
            embedders=embedders,
        )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
