"""Semantic search for a tenant: a text query (text space) or an example file (its space).

Nothing crosses spaces: a text query finds text, an image finds images, a sound finds sounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from hartonomous.embed.features import FeatureError
from hartonomous.embed.indexing import Embedders, can_query_public_corpus
from hartonomous.embed.spaces import TEXT_SPACE, EmbeddingSpace, get_space, space_for_modality
from hartonomous.search.planner import MAX_K, PlannerSettings
from hartonomous.search.query import Filters, Scope, describe, search_vector
from hartonomous.security.tenants import require_active_tenant


class SearchError(ValueError):
    """A search that cannot run as asked (the message says why)."""


@dataclass(frozen=True)
class SearchHit:
    atom_id: str
    score: float
    text: str | None
    source: str
    modality: str
    """Modality of the file the atom came from (text, document, image, audio, video, …)."""
    source_type: str
    visibility: str


@dataclass(frozen=True)
class SearchResult:
    space: str
    method: str
    hits: list[SearchHit]
    query_truncated: bool = False
    query_tokens: int = 0
    max_tokens: int = 0


@dataclass(frozen=True)
class Query:
    """What to look for: text, or an example image or sound file."""

    text: str | None = None
    like: Path | None = None


def search(
    engine: Engine,
    tenant_id: str,
    query: Query,
    k: int = 10,
    *,
    filters: Filters | None = None,
    embedders: Embedders | None = None,
    settings: PlannerSettings | None = None,
) -> SearchResult:
    if not 1 <= k <= MAX_K:
        raise SearchError(f"-k must be between 1 and {MAX_K}, got {k}")
    if (query.text is None) == (query.like is None):
        raise SearchError("give either a text query or --like FILE, not both or neither")
    filters = filters or Filters()
    if (
        filters.held_since is not None
        and filters.held_until is not None
        and filters.held_since >= filters.held_until
    ):
        raise SearchError("--since must be earlier than --until")
    with engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        scope = Scope(tenant_id, can_query_public_corpus(connection, tenant_id))
    embedders = embedders or Embedders()
    truncated, tokens, window = False, 0, 0
    if query.text is not None:
        if not query.text.strip():
            raise SearchError("the query is empty")
        space = get_space(TEXT_SPACE)
        try:
            encoded = embedders.text_model.encode([query.text])
        except ValueError:
            raise SearchError("the query has no words to search for") from None
        vector = encoded.vectors[0]
        truncated, tokens, window = (
            encoded.truncated[0],
            encoded.token_counts[0],
            encoded.max_tokens,
        )
    else:
        assert query.like is not None
        space, vector = _example(query.like, embedders)
    with engine.begin() as connection:
        found = search_vector(
            connection, space, vector, k, scope, filters=filters, settings=settings
        )
        ids = [n.atom_id for n in found.neighbours]
        details = describe(connection, space, scope, ids, filters)
    hits = [
        SearchHit(
            atom_id=n.atom_id.hex(),
            score=round(n.score, 6),
            text=details[n.atom_id].text,
            source=details[n.atom_id].source,
            modality=details[n.atom_id].source_modality,
            source_type=details[n.atom_id].source_type,
            visibility=details[n.atom_id].visibility,
        )
        for n in found.neighbours
        if n.atom_id in details  # a holding released between the two statements
    ]
    return SearchResult(space.name, found.method_used.value, hits, truncated, tokens, window)


def _example(path: Path, embedders: Embedders) -> tuple[EmbeddingSpace, npt.NDArray[np.float32]]:
    from hartonomous.ingest.extractors import ExtractionError, extract

    try:
        extraction = extract(path)
        data = path.read_bytes()
    except ExtractionError as exc:
        raise SearchError(f"{path}: {exc}") from None
    except OSError as exc:
        raise SearchError(f"{path}: {exc.strerror or exc}") from None
    space = space_for_modality(extraction.modality)
    if space is None or space.modality == "text":
        raise SearchError(
            f"{path} is {extraction.modality}; --like takes an image or an audio file "
            "(search text by giving it as the query)"
        )
    try:
        return space, embedders.embed_media(space.modality, data)
    except FeatureError as exc:
        raise SearchError(f"{path}: {exc}") from None
