"""The tasks on the built-in text model (MiniLM, docs/embed.md): `text_embedding`,
`semantic_search` and `classification` (docs/inference.md, "Tasks").

Each reads its text from the atom the stored input names, and is billed tokens/1000 (the
tokenizer's word pieces of that text, [CLS] and [SEP] included, exact as a Decimal).
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import text

from hartonomous.atoms.hashing import hex_to_digest
from hartonomous.atoms.read import read_atom_bytes
from hartonomous.embed.indexing import Embedders, shared_text_embedder
from hartonomous.embed.spaces import TEXT_SPACE, get_space
from hartonomous.inference.tasks import (
    InferenceInputError,
    InputAtom,
    StepRecord,
    TaskContext,
    TaskResult,
)
from hartonomous.json_types import JsonValue
from hartonomous.search.service import Query, search, validate

if TYPE_CHECKING:
    from hartonomous.embed.text_model import MiniLMTextEmbedder

__all__ = ["classify", "embed_text", "search_semantically"]

_TOKENS_PER_UNIT = Decimal(1000)

# The k labelled search entries of the tenant nearest the query (cosine distance, exact: every
# labelled entry is compared), with how many labelled entries there are (before the LIMIT).
_NEAREST_LABELLED = text(
    "SELECT se.atom_id, h.holding_id, h.source_uri, h.metadata ->> 'label' AS label, "
    "1 - (e.embedding <=> CAST(:query AS vector)) AS similarity, count(*) OVER () AS examined "
    "FROM search_entries se "
    "JOIN holdings h ON h.tenant_id = se.tenant_id AND h.holding_id = se.holding_id "
    "JOIN atom_embeddings e ON e.atom_id = se.atom_id AND e.space = se.space "
    "WHERE se.tenant_id = :tenant_id AND se.space = :space "
    "AND coalesce(h.metadata ->> 'label', '') <> '' "
    "ORDER BY e.embedding <=> CAST(:query AS vector), se.atom_id LIMIT :k"
)


@functools.cache
def _model() -> MiniLMTextEmbedder:
    return shared_text_embedder()


def _milliseconds(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def _input_text(context: TaskContext) -> tuple[str, bytes]:
    """The request's text and the atom it is stored in."""
    reference = context.request.input.get("text")
    if not isinstance(reference, dict) or not isinstance(reference.get("atom_id"), str):
        raise InferenceInputError("input 'text' is not an atom reference")
    atom_id = hex_to_digest(str(reference["atom_id"]))
    with context.engine.connect() as connection:
        data = b"".join(read_atom_bytes(connection, atom_id))
    try:
        return data.decode("utf-8"), atom_id
    except UnicodeDecodeError as exc:
        raise InferenceInputError(
            f"input 'text' (atom {atom_id.hex()}) is not UTF-8 text: byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start}"
        ) from None


def _embed(value: str) -> tuple[list[float], int, bool, float]:
    """The text's vector, token count, whether it was truncated, and the milliseconds taken."""
    started = time.perf_counter()
    model = _model()
    if not model.embeddable([value])[0]:
        raise InferenceInputError("input 'text' has no word pieces to embed (empty or whitespace)")
    encoded = model.encode([value])
    if encoded.unknown_only[0]:
        raise InferenceInputError(
            "input 'text' is made only of characters the text model does not know (such as "
            "emoji): it has nothing to embed"
        )
    vector = [float(x) for x in encoded.vectors[0]]
    return vector, encoded.token_counts[0], encoded.truncated[0], _milliseconds(started)


def _k(context: TaskContext) -> int:
    k = context.request.input.get("k")
    if isinstance(k, bool) or not isinstance(k, int):
        raise InferenceInputError(f"input 'k' must be an integer, got {k!r}")
    return k


def embed_text(context: TaskContext) -> TaskResult:
    """`text_embedding`: the text's 384-float unit vector in the text space.

    Output: ``{"space", "dimension", "vector", "token_count", "truncated"}``.
    """
    value, atom_id = _input_text(context)
    vector, tokens, truncated, took = _embed(value)
    return TaskResult(
        output={
            "space": TEXT_SPACE,
            "dimension": len(vector),
            "vector": list[JsonValue](vector),
            "token_count": tokens,
            "truncated": truncated,
        },
        usage_units=Decimal(tokens) / _TOKENS_PER_UNIT,
        embedding=vector,
        input_atoms=[InputAtom("text", atom_id)],
        steps=[
            StepRecord(
                "embed",
                took,
                rows_returned=1,
                detail={"space": TEXT_SPACE, "token_count": tokens, "truncated": truncated},
            )
        ],
    )


def search_semantically(context: TaskContext) -> TaskResult:
    """`semantic_search`: the tenant's ``k`` atoms nearest the text (``hartonomous.search``,
    semantic mode), best first.

    Output: ``{"space", "method", "hits": [{"atom_id", "score", "text", "source",
    "modality", "source_type"}]}``. Raises ``SearchError`` (an input error) as search does.
    """
    value, atom_id = _input_text(context)
    k = _k(context)
    query = Query(text=value)
    mode = validate(query, k, "semantic", None)
    started = time.perf_counter()
    result = search(
        context.engine,
        context.request.tenant_id,
        query,
        k,
        mode=mode,
        embedders=Embedders(_model()),
    )
    took = _milliseconds(started)
    hits: list[JsonValue] = [
        {
            "atom_id": hit.atom_id,
            "score": hit.score,
            "text": hit.text,
            "source": hit.source,
            "modality": hit.modality,
            "source_type": hit.source_type,
        }
        for hit in result.hits
    ]
    return TaskResult(
        output={"space": result.space, "method": result.method, "hits": hits},
        usage_units=Decimal(result.query_tokens) / _TOKENS_PER_UNIT,
        input_atoms=[InputAtom("text", atom_id)],
        steps=[
            StepRecord(
                "semantic_search",
                took,
                query_text=value,
                index_used=result.method,
                rows_examined=result.vectors_examined,
                rows_returned=len(result.hits),
                detail={
                    "space": result.space,
                    "k": k,
                    # Whether rows_examined is the exact count or a lower bound (an HNSW scan,
                    # or an exact scan past the planner's limit: SearchResult.vectors_examined).
                    "rows_examined_exact": result.examined_exactly,
                    "query_tokens": result.query_tokens,
                    "truncated": result.query_truncated,
                    "notes": list[JsonValue](result.notes),
                },
            )
        ],
    )


def classify(context: TaskContext) -> TaskResult:
    """`classification`: k-nearest-neighbour vote over the tenant's labelled holdings.

    The text's vector is compared (cosine) with every search entry of the tenant's holdings
    whose metadata has a ``label`` (`ingest --label`); the ``k`` nearest vote for their label
    with weight max(similarity, 0) (each weight 1 when all are 0). ``confidence`` is the
    winning label's share of the votes, in [0, 1]; ties go to the label that sorts first.
    Output: ``{"label", "confidence", "votes": {label: share}, "neighbours": [{"atom_id",
    "holding_id", "source_uri", "label", "similarity"}]}``. Raises ``InferenceInputError``
    when the tenant has no labelled holding with a text vector.
    """
    value, atom_id = _input_text(context)
    k = _k(context)
    vector, tokens, truncated, embed_ms = _embed(value)
    started = time.perf_counter()
    with context.engine.connect() as connection:
        rows = connection.execute(
            _NEAREST_LABELLED,
            {
                "query": "[" + ",".join(repr(x) for x in vector) + "]",
                "tenant_id": context.request.tenant_id,
                "space": get_space(TEXT_SPACE).name,
                "k": k,
            },
        ).all()
    search_ms = _milliseconds(started)
    if not rows:
        raise InferenceInputError(
            f"tenant {context.request.tenant_id!r} has no labelled text to classify by "
            "(ingest some with a label)"
        )
    weights = [max(float(row.similarity), 0.0) for row in rows]
    if not any(weights):
        weights = [1.0] * len(rows)
    votes: dict[str, float] = defaultdict(float)
    for row, weight in zip(rows, weights, strict=True):
        votes[row.label] += weight
    total = sum(votes.values())
    label = min(votes, key=lambda name: (-votes[name], name))
    confidence = votes[label] / total
    neighbours: list[JsonValue] = [
        {
            "atom_id": bytes(row.atom_id).hex(),
            "holding_id": str(row.holding_id),
            "source_uri": row.source_uri,
            "label": row.label,
            "similarity": float(row.similarity),
        }
        for row in rows
    ]
    return TaskResult(
        output={
            "label": label,
            "confidence": confidence,
            "votes": {name: votes[name] / total for name in sorted(votes)},
            "neighbours": neighbours,
        },
        usage_units=Decimal(tokens) / _TOKENS_PER_UNIT,
        confidence=confidence,
        embedding=vector,
        input_atoms=[
            InputAtom("text", atom_id),
            *(
                InputAtom(f"neighbour/{rank}", bytes(row.atom_id))
                for rank, row in enumerate(rows, start=1)
            ),
        ],
        steps=[
            StepRecord(
                "embed",
                embed_ms,
                rows_returned=1,
                detail={"space": TEXT_SPACE, "token_count": tokens, "truncated": truncated},
            ),
            StepRecord(
                "nearest_labelled",
                search_ms,
                query_text=value,
                index_used="none (exact scan of the tenant's labelled entries)",
                rows_examined=int(rows[0].examined),
                rows_returned=len(rows),
                detail={"k": k, "space": TEXT_SPACE},
            ),
        ],
    )
