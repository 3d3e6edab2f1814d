"""Embeddings of stored atoms, and the search entries that make them findable by a tenant.

At ingestion (`index_holding`, in the file's own transaction, after its holding is made):
1. the holding's searchable atoms are found by walking down from its root (components and
   derivations; chunks are skipped): text atoms with canonical text, image and audio atoms;
2. those without a vector in their space are embedded, in batches: dedup saves model time,
   since an atom already stored already has its vector; the text model is loaded only when a
   text atom needs one, so image, audio and binary files never load it;
3. with a near-duplicate policy, each newly embedded text atom is linked `similar_to` its
   nearest neighbour among what the tenant can see, when at least as similar as the threshold;
4. the holding's search entries are written (one per embedded atom it reaches).

`backfill` embeds what is missing (atoms stored before this existed, or whose embedding failed)
in committed batches, then writes the search entries of every holding. Both are idempotent.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import structlog
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hartonomous.atoms.read import write_atom_bytes
from hartonomous.db.tables import (
    atom_embeddings,
    atom_similarities,
    billing_rate_plans,
    deduplication_policies,
)
from hartonomous.embed.audio_features import audio_features
from hartonomous.embed.features import FeatureError
from hartonomous.embed.image_features import image_features
from hartonomous.embed.spaces import (
    SPACES,
    TEXT_SPACE,
    EmbeddingSpace,
    get_space,
    space_for_modality,
)

if TYPE_CHECKING:
    from hartonomous.embed.text_model import MiniLMTextEmbedder

log = structlog.get_logger(__name__)

TEXT_BATCH = 64
MAX_MEDIA_BYTES = 256 * 1024 * 1024
"""Images and sounds larger than this are stored but not embedded (their bytes are read whole)."""

_MEDIA_FEATURES: dict[str, Callable[[bytes], npt.NDArray[np.float32]]] = {
    "image": image_features,
    "audio": audio_features,
}

# The searchable atoms under each seed holding: walk components and derivations down from the
# root, not into bare chunks and spans (they are bytes, never searchable).
_SEARCHABLE = """
WITH RECURSIVE down(tenant_id, holding_id, atom_id) AS (
    SELECT h.tenant_id, h.holding_id, h.atom_id FROM holdings h WHERE {seed}
    UNION
    SELECT down.tenant_id, down.holding_id, edges.child
    FROM (
        SELECT parent_atom_id AS parent, child_atom_id AS child FROM atom_components
        UNION ALL
        SELECT from_atom_id, to_atom_id FROM atom_relations
    ) AS edges
    JOIN down ON edges.parent = down.atom_id
    JOIN atoms a ON a.atom_id = edges.child
    WHERE a.modality <> 'binary'
)
"""

_WRITE_ENTRIES = (
    _SEARCHABLE
    + """
INSERT INTO search_entries
    (tenant_id, space, atom_id, holding_id, visibility, source_type, source_modality, held_at)
SELECT h.tenant_id, e.space, e.atom_id, h.holding_id, h.visibility, h.source_type,
       root.modality, h.created_at
FROM down
JOIN holdings h ON h.tenant_id = down.tenant_id AND h.holding_id = down.holding_id
JOIN atoms root ON root.atom_id = h.atom_id
JOIN atom_embeddings e ON e.atom_id = down.atom_id
ON CONFLICT DO NOTHING
"""
)


class UnknownPolicyError(LookupError):
    """No deduplication policy of that name."""


@cache
def shared_text_embedder() -> MiniLMTextEmbedder:
    """One text model per process (loaded on first use), shared by every ingestion."""
    from hartonomous.embed.text_model import MiniLMTextEmbedder

    return MiniLMTextEmbedder()


@dataclass(frozen=True)
class DedupPolicy:
    name: str
    semantic_threshold: float | None


@dataclass(frozen=True)
class SimilarLink:
    atom_id: str
    similar_to: str
    similarity: float


@dataclass
class IndexReport:
    embedded: int = 0
    entries: int = 0
    not_embedded: int = 0
    similar: list[SimilarLink] = field(default_factory=list)


def resolve_policy(connection: Connection, name: str) -> DedupPolicy:
    row = connection.execute(
        select(deduplication_policies.c.semantic_threshold).where(
            deduplication_policies.c.policy_name == name
        )
    ).one_or_none()
    if row is None:
        known = connection.execute(
            select(deduplication_policies.c.policy_name).order_by("policy_name")
        ).scalars()
        raise UnknownPolicyError(
            f"unknown deduplication policy {name!r} (known: {', '.join(known)})"
        )
    return DedupPolicy(name, row.semantic_threshold)


def can_query_public_corpus(connection: Connection, tenant_id: str) -> bool:
    """The tenant's plan flag: its newest active plan, else the newest active global plan
    (digest §4.3). With no plan at all, the public corpus stays closed."""
    plans = billing_rate_plans.c
    flag = connection.execute(
        select(plans.can_query_public_corpus)
        .where(plans.is_active, (plans.tenant_id == tenant_id) | plans.tenant_id.is_(None))
        .order_by(plans.tenant_id.is_(None), plans.updated_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    return bool(flag)


class Embedders:
    """Vectors for atoms, by space; the text model loads only when text needs embedding."""

    def __init__(self, text_model: MiniLMTextEmbedder | None = None) -> None:
        self._text_model = text_model

    @property
    def text_model(self) -> MiniLMTextEmbedder:
        if self._text_model is None:
            self._text_model = shared_text_embedder()
        return self._text_model

    def embed_texts(self, texts: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        """Vectors in order; None for a text with nothing to embed (whitespace, controls)."""
        vectors: list[npt.NDArray[np.float32] | None] = [None] * len(texts)
        wanted = [index for index, value in enumerate(texts) if value.strip()]
        for start in range(0, len(wanted), TEXT_BATCH):
            batch = wanted[start : start + TEXT_BATCH]
            try:
                rows = list(self.text_model.embed([texts[i] for i in batch]))
            except ValueError:
                # A text of control characters only has no word pieces: find it one by one.
                rows = [self._one(texts[i]) for i in batch]
            for index, row in zip(batch, rows, strict=True):
                vectors[index] = row
        return vectors

    def _one(self, value: str) -> npt.NDArray[np.float32] | None:
        try:
            vector: npt.NDArray[np.float32] = self.text_model.embed([value])[0]
        except ValueError:
            return None
        return vector

    @staticmethod
    def embed_media(modality: str, data: bytes) -> npt.NDArray[np.float32]:
        return _MEDIA_FEATURES[modality](data)


@dataclass(frozen=True)
class _Candidate:
    atom_id: bytes
    modality: str
    canonical_text: str | None
    size_bytes: int


def _embed_candidates(
    connection: Connection, embedders: Embedders, candidates: Iterable[_Candidate]
) -> tuple[dict[bytes, tuple[EmbeddingSpace, npt.NDArray[np.float32]]], int]:
    """Vectors of the candidates that could be embedded, and how many could not."""
    vectors: dict[bytes, tuple[EmbeddingSpace, npt.NDArray[np.float32]]] = {}
    failed = 0
    texts: list[_Candidate] = []
    for candidate in candidates:
        space = space_for_modality(candidate.modality)
        if space is None:
            continue
        if candidate.modality == "text":
            texts.append(candidate)
            continue
        if candidate.size_bytes > MAX_MEDIA_BYTES:
            failed += 1
            continue
        data = io.BytesIO()
        write_atom_bytes(connection, candidate.atom_id, data)
        try:
            vectors[candidate.atom_id] = (
                space,
                embedders.embed_media(candidate.modality, data.getvalue()),
            )
        except FeatureError as exc:
            log.warning("not embedded", atom_id=candidate.atom_id.hex(), reason=str(exc))
            failed += 1
    if texts:
        from hartonomous.embed.text_model import TextModelError

        space = get_space(TEXT_SPACE)
        try:
            text_vectors = embedders.embed_texts([c.canonical_text or "" for c in texts])
        except TextModelError as exc:
            # Content is stored all the same; `embed --backfill` embeds it once the model is back.
            log.error("text model unavailable, text not embedded", reason=str(exc))
            return vectors, failed + len(texts)
        for candidate, vector in zip(texts, text_vectors, strict=True):
            if vector is None:
                failed += 1
            else:
                vectors[candidate.atom_id] = (space, vector)
    return vectors, failed


def _store_vectors(
    connection: Connection, vectors: dict[bytes, tuple[EmbeddingSpace, npt.NDArray[np.float32]]]
) -> set[bytes]:
    """Insert the vectors; the atoms whose vector this call created (not a concurrent one)."""
    if not vectors:
        return set()
    rows = [
        {"atom_id": atom_id, "space": space.name, "dimension": space.dimension, "embedding": vec}
        for atom_id, (space, vec) in vectors.items()
    ]
    created = connection.execute(
        pg_insert(atom_embeddings)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(atom_embeddings.c.atom_id)
    ).scalars()
    return {bytes(atom_id) for atom_id in created}


class HoldingIndexer:
    """Indexes every holding of one ingestion job (one tenant, one policy)."""

    def __init__(self, embedders: Embedders, policy: DedupPolicy, include_public: bool) -> None:
        self.embedders = embedders
        self.policy = policy
        self.include_public = include_public

    @classmethod
    def for_job(
        cls, engine: Engine, tenant_id: str, policy_name: str, embedders: Embedders | None = None
    ) -> HoldingIndexer:
        with engine.connect() as connection:
            policy = resolve_policy(connection, policy_name)
            include_public = can_query_public_corpus(connection, tenant_id)
        return cls(embedders or Embedders(), policy, include_public)

    def index_holding(
        self, connection: Connection, tenant_id: str, holding_id: uuid.UUID, job_id: uuid.UUID
    ) -> IndexReport:
        return self.index_holdings(connection, tenant_id, [holding_id], job_id)[holding_id]

    def index_holdings(
        self,
        connection: Connection,
        tenant_id: str,
        holding_ids: Sequence[uuid.UUID],
        job_id: uuid.UUID,
    ) -> dict[uuid.UUID, IndexReport]:
        """Index several holdings of one job at once (one embedding pass for all their atoms).

        An atom reached by several holdings is embedded once and counted for the first of them
        in `holding_ids` order.
        """
        reports = {holding_id: IndexReport() for holding_id in holding_ids}
        if not holding_ids:
            return reports
        seed = "h.tenant_id = :tenant_id AND h.holding_id = ANY(:holding_ids)"
        params: dict[str, Any] = {"tenant_id": tenant_id, "holding_ids": list(holding_ids)}
        rows = connection.execute(
            text(
                _SEARCHABLE.format(seed=seed)
                + "SELECT DISTINCT ON (a.atom_id) a.atom_id, down.holding_id, a.modality, "
                "a.canonical_text, a.size_bytes "
                "FROM down JOIN atoms a USING (atom_id) "
                "WHERE ((a.modality = 'text' AND a.canonical_text IS NOT NULL) "
                "       OR a.modality IN ('image', 'audio')) "
                "AND NOT EXISTS (SELECT 1 FROM atom_embeddings e WHERE e.atom_id = a.atom_id) "
                "ORDER BY a.atom_id, array_position(CAST(:holding_ids AS uuid[]), down.holding_id)"
            ),
            params,
        ).all()
        candidates = [
            _Candidate(bytes(r.atom_id), r.modality, r.canonical_text, r.size_bytes) for r in rows
        ]
        owner = {bytes(r.atom_id): r.holding_id for r in rows}
        vectors, _ = _embed_candidates(connection, self.embedders, candidates)
        created = _store_vectors(connection, vectors)
        for atom_id, holding_id in owner.items():
            if atom_id in created:
                reports[holding_id].embedded += 1
            elif atom_id not in vectors:
                reports[holding_id].not_embedded += 1
        if self.policy.semantic_threshold is not None:
            links = self._link_similar(
                connection, tenant_id, job_id, {a: vectors[a] for a in sorted(created)}
            )
            for link in links:
                reports[owner[bytes.fromhex(link.atom_id)]].similar.append(link)
        written = connection.execute(
            text(_WRITE_ENTRIES.format(seed=seed) + " RETURNING holding_id"), params
        ).scalars()
        for holding_id in written:
            reports[holding_id].entries += 1
        return reports

    def _link_similar(
        self,
        connection: Connection,
        tenant_id: str,
        job_id: uuid.UUID,
        created: dict[bytes, tuple[EmbeddingSpace, npt.NDArray[np.float32]]],
    ) -> list[SimilarLink]:
        from hartonomous.search.query import Filters, Scope, search_vector

        threshold = self.policy.semantic_threshold
        assert threshold is not None
        scope = Scope(tenant_id, self.include_public)
        links: list[SimilarLink] = []
        for atom_id, (space, vector) in created.items():
            if space.modality != "text":
                continue
            found = search_vector(
                connection, space, vector, 1, scope, filters=Filters(exclude_atom=atom_id)
            ).neighbours
            if not found or found[0].score < threshold:
                continue
            nearest = found[0]
            connection.execute(
                pg_insert(atom_similarities)
                .values(
                    tenant_id=tenant_id,
                    atom_id=atom_id,
                    similar_atom_id=nearest.atom_id,
                    space=space.name,
                    similarity=nearest.score,
                    policy_name=self.policy.name,
                    job_id=job_id,
                )
                .on_conflict_do_nothing()
            )
            links.append(SimilarLink(atom_id.hex(), nearest.atom_id.hex(), nearest.score))
        return links


@dataclass
class BackfillReport:
    embedded: dict[str, int] = field(default_factory=dict)
    not_embedded: dict[str, int] = field(default_factory=dict)
    entries: int = 0


def backfill(
    engine: Engine,
    spaces: Sequence[EmbeddingSpace] = SPACES,
    *,
    embedders: Embedders | None = None,
    batch_size: int = 256,
    on_batch: Callable[[str, int], None] | None = None,
) -> BackfillReport:
    """Embed every referenced atom that lacks a vector in ``spaces``, then write search entries.

    Each batch commits on its own, so an interrupted backfill keeps what it did. Atoms that
    cannot be embedded are counted and skipped (keyset pagination never revisits them).
    """
    embedders = embedders or Embedders()
    report = BackfillReport()
    for space in spaces:
        report.embedded[space.name] = report.not_embedded[space.name] = 0
        after = b""
        while True:
            with engine.begin() as connection:
                rows = connection.execute(
                    text(
                        "SELECT a.atom_id, a.modality, a.canonical_text, a.size_bytes "
                        "FROM atoms a WHERE a.modality = :modality AND a.atom_id > :after "
                        "AND EXISTS (SELECT 1 FROM atom_reference_counts r "
                        "            WHERE r.atom_id = a.atom_id AND r.reference_count > 0) "
                        "AND (a.modality <> 'text' OR a.canonical_text IS NOT NULL) "
                        "AND NOT EXISTS (SELECT 1 FROM atom_embeddings e "
                        "                WHERE e.atom_id = a.atom_id AND e.space = :space) "
                        "ORDER BY a.atom_id LIMIT :batch"
                    ),
                    {
                        "modality": space.modality,
                        "after": after,
                        "space": space.name,
                        "batch": batch_size,
                    },
                ).all()
                if not rows:
                    break
                after = bytes(rows[-1].atom_id)
                candidates = [
                    _Candidate(bytes(r.atom_id), r.modality, r.canonical_text, r.size_bytes)
                    for r in rows
                ]
                vectors, failed = _embed_candidates(connection, embedders, candidates)
                created = _store_vectors(connection, vectors)
            report.embedded[space.name] += len(created)
            report.not_embedded[space.name] += failed
            if on_batch is not None:
                on_batch(space.name, len(created))
    with engine.begin() as connection:
        report.entries = connection.execute(text(_WRITE_ENTRIES.format(seed="true"))).rowcount
    return report
