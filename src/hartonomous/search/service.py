"""Search for a tenant: hybrid (semantic + lexical), semantic or lexical; or by example file.

Nothing crosses spaces: a text query finds text, an image finds images, a sound finds sounds.
Modes (docs/search.md): `semantic` ranks by cosine similarity in the query's space; `lexical`
by PostgreSQL full-text search over text atoms; `hybrid` (the default) fuses both lists by
reciprocal rank fusion, verbatim matches first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from hartonomous.db.tables.atoms import FILE_MODALITIES, SOURCE_TYPES
from hartonomous.embed.features import FeatureError
from hartonomous.embed.indexing import Embedders
from hartonomous.embed.spaces import TEXT_SPACE, EmbeddingSpace, get_space, space_for_modality
from hartonomous.errors import UsageError
from hartonomous.search.fusion import Signal, fuse
from hartonomous.search.lexical import search_lexical
from hartonomous.search.planner import MAX_K, Method, PlannerSettings, ef_search_for
from hartonomous.search.query import Filters, Neighbour, describe
from hartonomous.search.scope import VectorCount, open_scope, search_in_scope

SearchMode = Literal["hybrid", "semantic", "lexical"]
SEARCH_MODES: tuple[SearchMode, ...] = get_args(SearchMode)
FUSION_DEPTH = 40
"""In hybrid mode, each signal contributes its best max(k, FUSION_DEPTH) atoms to the fusion."""
MAX_QUERY_CHARACTERS = 4000
"""Longest text query accepted (characters). PostgreSQL's memory for a lexical query grows
faster than its length (16,000 words took ~1 GB, 20,000 failed); 4,000 characters (~650 words)
run in ~10 ms, and the model reads only its first 256 word pieces anyway (docs/search.md)."""


class SearchError(UsageError, ValueError):
    """A search that cannot run as asked (the message says why)."""


@dataclass(frozen=True)
class SearchHit:
    atom_id: str
    score: float | None
    """Cosine similarity to the query's vector; None when either has no vector."""
    text: str | None
    source: str
    modality: str
    """Modality of the file the atom came from (text, document, image, audio, video, …)."""
    source_type: str
    visibility: str
    signals: dict[Signal, int] = field(default_factory=dict)
    """The signals that found the atom, with its rank (from 1) in each."""
    verbatim: bool = False
    """The atom's whole text is the query (it is then ranked first in hybrid and lexical modes)."""


@dataclass(frozen=True)
class SearchResult:
    space: str
    method: str
    """How the vector part ran (`exact` or `hnsw`), or `none` when no vector search ran."""
    hits: list[SearchHit]
    query_truncated: bool = False
    query_tokens: int = 0
    max_tokens: int = 0
    mode: SearchMode = "hybrid"
    notes: list[str] = field(default_factory=list)
    """What the user should know about how the query was answered (shown on stderr)."""
    vectors_examined: int | None = None
    """Stored vectors the vector search weighed against the query: `exact`, every visible
    entry (counted exactly up to the planner's ``exact_limit``, beyond it this is
    ``exact_limit + 1``, a lower bound); `hnsw`, the scan's candidate list
    (``hnsw.ef_search``, a lower bound: an iterative scan may visit more index tuples, which
    pgvector does not report). None when no vector search ran."""
    examined_exactly: bool = False
    """Whether ``vectors_examined`` is the exact number (an exact scan within the limit)."""


@dataclass(frozen=True)
class Example:
    """A search by example: an image or a sound (`ingest.examples.read_example` reads files)."""

    name: str
    modality: str
    data: bytes


@dataclass(frozen=True)
class Query:
    """What to look for: text, or an example image or sound."""

    text: str | None = None
    like: Example | None = None


@dataclass(frozen=True)
class _QueryVector:
    space: EmbeddingSpace
    vector: npt.NDArray[np.float32] | None
    truncated: bool = False
    tokens: int = 0
    window: int = 0


def search(
    engine: Engine,
    tenant_id: str,
    query: Query,
    k: int = 10,
    *,
    mode: SearchMode = "hybrid",
    filters: Filters | None = None,
    embedders: Embedders | None = None,
    settings: PlannerSettings | None = None,
) -> SearchResult:
    """The ``k`` best visible atoms for the query, best first.

    Raises SearchError for: k outside 1..100, no query or two, an empty query or one over
    MAX_QUERY_CHARACTERS, an unknown mode
    or tenant, --since not before --until, a --modality or --source-type filter naming none of
    FILE_MODALITIES or SOURCE_TYPES, a semantic search for a text the model cannot see
    (no word pieces, or only `[UNK]` ones), lexical search by example, an unreadable example.
    """
    validate(query, k, mode, filters)
    filters = filters or Filters()
    if query.like is not None:
        mode = "semantic"  # an example has no words: hybrid is its semantic part
    notes: list[str] = []
    # Embedded before the transaction opens: no connection is held while the model runs.
    wanted = _query_vector(query, mode, embedders or Embedders(), notes)
    depth = k if mode != "hybrid" else max(k, FUSION_DEPTH)
    count = None
    planner = settings or PlannerSettings()
    if wanted.vector is not None:
        count = VectorCount(wanted.space, filters, depth, planner)
    examined: int | None = None
    # No transaction: each statement reads its own snapshot, as in a READ COMMITTED transaction,
    # and BEGIN and COMMIT would add two round trips to a search of two or three statements.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        semantic: list[Neighbour] = []
        method = "none"
        if count is not None and wanted.vector is not None:
            # The tenant checked and the vector search made in one statement.
            opened, found = search_in_scope(
                connection, tenant_id, count, wanted.vector, details=mode == "semantic"
            )
            method = found.method_used.value
            semantic = found.neighbours
            hnsw = found.method_used is Method.HNSW
            examined = ef_search_for(depth, planner) if hnsw else opened.visible
        else:
            opened = open_scope(connection, tenant_id)
        scope = opened.scope
        lexical_matches = []
        if query.text is not None and mode != "semantic":
            lexical_matches = search_lexical(connection, query.text, depth, scope, filters=filters)
        ranked = fuse(
            [n.atom_id for n in semantic],
            [m.atom_id for m in lexical_matches],
            {m.atom_id for m in lexical_matches if m.verbatim},
            k,
        )
        # A semantic search read its hits' details with its neighbours; otherwise one more
        # statement reads them for the fused list.
        details = {n.atom_id: n.details for n in semantic if n.details is not None}
        if mode != "semantic":
            ids = [entry.atom_id for entry in ranked]
            details = describe(
                connection, wanted.space, scope, ids, filters=filters, vector=wanted.vector
            )
    hits = [
        SearchHit(
            atom_id=entry.atom_id.hex(),
            score=_similarity(details[entry.atom_id].distance),
            text=details[entry.atom_id].text,
            source=details[entry.atom_id].source,
            modality=details[entry.atom_id].source_modality,
            source_type=details[entry.atom_id].source_type,
            visibility=details[entry.atom_id].visibility,
            signals=dict(entry.ranks),
            verbatim=entry.verbatim,
        )
        for entry in ranked
        if entry.atom_id in details  # a holding released between the statements
    ]
    return SearchResult(
        wanted.space.name,
        method,
        hits,
        wanted.truncated,
        wanted.tokens,
        wanted.window,
        mode,
        notes,
        examined,
        examined_exactly=(
            method == Method.EXACT.value
            and examined is not None
            and examined <= planner.exact_limit
        ),
    )


def validate(query: Query, k: int, mode: str, filters: Filters | None) -> SearchMode:
    """``mode`` as a SearchMode; SearchError for a search that cannot run as asked (`search`)."""
    if not 1 <= k <= MAX_K:
        raise SearchError(f"-k must be between 1 and {MAX_K}, got {k}")
    if mode not in SEARCH_MODES:
        raise SearchError(f"unknown search mode {mode!r} (known: {', '.join(SEARCH_MODES)})")
    if (query.text is None) == (query.like is None):
        raise SearchError("give either a text query or --like FILE, not both or neither")
    if query.text is not None and not query.text.strip():
        raise SearchError("the query is empty")
    if query.text is not None and len(query.text) > MAX_QUERY_CHARACTERS:
        raise SearchError(
            f"the query is {len(query.text)} characters; at most {MAX_QUERY_CHARACTERS} "
            "are accepted"
        )
    if query.like is not None and mode == "lexical":
        raise SearchError("--like searches by example, which has no words: use --mode semantic")
    if (
        filters is not None
        and filters.held_since is not None
        and filters.held_until is not None
        and filters.held_since >= filters.held_until
    ):
        raise SearchError("--since must be earlier than --until")
    if filters is not None:
        _known("--modality", filters.source_modality, FILE_MODALITIES)
        _known("--source-type", filters.source_type, SOURCE_TYPES)
    return mode


def _known(option: str, value: str | None, known: tuple[str, ...]) -> None:
    # A filter naming nothing would silently answer "(no results)" (values are case-sensitive).
    if value is not None and value not in known:
        raise SearchError(f"unknown {option} {value!r} (known: {', '.join(known)})")


def _query_vector(
    query: Query, mode: SearchMode, embedders: Embedders, notes: list[str]
) -> _QueryVector:
    if query.like is not None:
        return _example_vector(query.like, embedders)
    assert query.text is not None
    space = get_space(TEXT_SPACE)
    if mode == "lexical":
        return _QueryVector(space, None)
    try:
        encoded = embedders.text_model.encode([query.text])
    except ValueError:
        raise SearchError("the query has no words to search for") from None
    if encoded.unknown_only[0]:
        unseen = (
            "the query is made only of characters the text model does not know (such as "
            "emoji), so it has no meaning to search for"
        )
        if mode == "semantic":
            raise SearchError(f"{unseen}: search it in lexical mode")
        notes.append(f"{unseen}; answered by lexical search only")
        return _QueryVector(space, None)
    return _QueryVector(
        space,
        encoded.vectors[0],
        encoded.truncated[0],
        encoded.token_counts[0],
        encoded.max_tokens,
    )


def _example_vector(example: Example, embedders: Embedders) -> _QueryVector:
    space = space_for_modality(example.modality)
    if space is None or space.modality == "text":
        raise SearchError(
            f"{example.name} is {example.modality}; --like takes an image or an audio file "
            "(search text by giving it as the query)"
        )
    try:
        return _QueryVector(space, embedders.embed_media(space.modality, example.data))
    except FeatureError as exc:
        raise SearchError(f"{example.name}: {exc}") from None


def _similarity(distance: float | None) -> float | None:
    return None if distance is None else round(1.0 - distance, 6)
