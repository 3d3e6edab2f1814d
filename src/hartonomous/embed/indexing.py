"""Vectors for stored atoms: which model embeds what, in batches, and where vectors are kept.

`embed` only turns atoms into vectors (`atom_embeddings`, one per atom and space). Who may find
them is `search`'s business (search entries, near-duplicate links); `ingest` calls both
(`ingest/indexing.py`, docs/architecture.md). The text model is loaded only when a text needs a
vector, so image, audio and binary files never load it.

A text is not embedded when the model would see nothing of it (docs/embed.md): no word pieces
at all (whitespace, control characters), or only `[UNK]` pieces (emoji and other characters
outside the model's vocabulary), whose vectors would all be alike and match each other.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import structlog
from sqlalchemy import Connection, text

from hartonomous.atoms.read import write_atom_bytes
from hartonomous.db.array_param import BinaryArray
from hartonomous.embed.audio_features import audio_features
from hartonomous.embed.features import FeatureError
from hartonomous.embed.image_features import image_features
from hartonomous.embed.spaces import TEXT_SPACE, EmbeddingSpace, get_space, space_for_modality
from hartonomous.embed.vector_param import Float4Array
from hartonomous.observability.metrics import EMBEDDING_BATCH_SECONDS

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

Unembeddable = Literal["no_word_pieces", "unknown_word_pieces_only"]
"""Why a text gets no vector: nothing to read, or nothing the model knows."""
UNEMBEDDABLE_REASONS: dict[Unembeddable, str] = {
    "no_word_pieces": "nothing to embed: empty, whitespace or characters the model ignores",
    "unknown_word_pieces_only": (
        "not embedded: made only of characters the model does not know (such as emoji); "
        "its vector would mean nothing"
    ),
}
"""What each Unembeddable reason means, as the `embed` command says it (docs/embed.md)."""

AtomVectors = dict[bytes, tuple[EmbeddingSpace, npt.NDArray[np.float32]]]


@cache
def shared_text_embedder() -> MiniLMTextEmbedder:
    """One text model per process (loaded on first use), shared by every ingestion."""
    from hartonomous.embed.text_model import MiniLMTextEmbedder

    return MiniLMTextEmbedder()


class Embedders:
    """Vectors for atoms, by space; the text model loads only when text needs embedding."""

    def __init__(self, text_model: MiniLMTextEmbedder | None = None) -> None:
        self._text_model = text_model

    @property
    def text_model(self) -> MiniLMTextEmbedder:
        if self._text_model is None:
            self._text_model = shared_text_embedder()
        return self._text_model

    def embed_texts(self, texts: Sequence[str]) -> list[npt.NDArray[np.float32] | Unembeddable]:
        """Vectors in order; for a text the model cannot see, the reason instead."""
        results: list[npt.NDArray[np.float32] | Unembeddable] = ["no_word_pieces"] * len(texts)
        wanted = [index for index, value in enumerate(texts) if value.strip()]
        for start in range(0, len(wanted), TEXT_BATCH):
            batch = wanted[start : start + TEXT_BATCH]
            try:
                with EMBEDDING_BATCH_SECONDS.time():
                    encoded = self.text_model.encode([texts[i] for i in batch])
            except ValueError:
                # A text of control characters only has no word pieces: find it one by one.
                for index in batch:
                    results[index] = self._one(texts[index])
                continue
            for row, index in enumerate(batch):
                results[index] = (
                    "unknown_word_pieces_only"
                    if encoded.unknown_only[row]
                    else encoded.vectors[row]
                )
        return results

    def _one(self, value: str) -> npt.NDArray[np.float32] | Unembeddable:
        try:
            encoded = self.text_model.encode([value])
        except ValueError:
            return "no_word_pieces"
        if encoded.unknown_only[0]:
            return "unknown_word_pieces_only"
        vector: npt.NDArray[np.float32] = encoded.vectors[0]
        return vector

    @staticmethod
    def embed_media(modality: str, data: bytes) -> npt.NDArray[np.float32]:
        return _MEDIA_FEATURES[modality](data)


@dataclass(frozen=True)
class EmbeddingCandidate:
    """A stored atom that may get a vector."""

    atom_id: bytes
    modality: str
    canonical_text: str | None
    size_bytes: int


@dataclass(frozen=True)
class EmbeddedAtoms:
    vectors: AtomVectors
    """The candidates that got a vector, with its space."""
    failed: int
    """Candidates that could not be embedded (unreadable media, no word pieces, no model)."""
    unknown_only_atoms: frozenset[bytes]
    """Texts made only of word pieces the model does not know (`[UNK]`): not embedded."""

    @property
    def unknown_only(self) -> int:
        return len(self.unknown_only_atoms)


def embed_candidates(
    connection: Connection, embedders: Embedders, candidates: Iterable[EmbeddingCandidate]
) -> EmbeddedAtoms:
    """Vectors for the candidates that can be embedded, and counts of those that cannot."""
    vectors: AtomVectors = {}
    failed = 0
    unknown_only: set[bytes] = set()
    texts: list[EmbeddingCandidate] = []
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
            return EmbeddedAtoms(vectors, failed + len(texts), frozenset())
        for candidate, vector in zip(texts, text_vectors, strict=True):
            if isinstance(vector, str):
                if vector == "unknown_word_pieces_only":
                    unknown_only.add(candidate.atom_id)
                else:
                    failed += 1
            else:
                vectors[candidate.atom_id] = (space, vector)
    return EmbeddedAtoms(vectors, failed, frozenset(unknown_only))


def store_vectors(connection: Connection, vectors: AtomVectors) -> set[bytes]:
    """Insert the vectors; the atoms whose vector this call created (not a concurrent one).

    One statement whatever the number of vectors: the rows travel as arrays (`unnest`), the
    vectors as one binary `real[]` (`embed/vector_param.py`), so the statement's text
    (compiled once) and its server-side plan are the same for every batch.
    """
    if not vectors:
        return set()
    packed = Float4Array([vector for _, vector in vectors.values()])
    created = connection.execute(
        _INSERT_VECTORS,
        {
            "atom_ids": BinaryArray(vectors),
            "spaces": BinaryArray([space.name for space, _ in vectors.values()]),
            "dimensions": BinaryArray([space.dimension for space, _ in vectors.values()]),
            "starts": BinaryArray(packed.starts),
            "values": packed,
        },
    ).scalars()
    return {bytes(atom_id) for atom_id in created}


_INSERT_VECTORS = text(
    "INSERT INTO atom_embeddings (atom_id, space, dimension, embedding) "
    "SELECT v.atom_id, v.space, v.dimension, "
    "CAST(f.packed[v.start + 1 : v.start + v.dimension] AS vector) "
    "FROM (SELECT CAST(:values AS real[]) AS packed) f, unnest("
    "CAST(:atom_ids AS bytea[]), CAST(:spaces AS text[]), CAST(:dimensions AS int[]), "
    "CAST(:starts AS int[])) AS v(atom_id, space, dimension, start) "
    "ON CONFLICT DO NOTHING RETURNING atom_id"
)


def referenced_without_vector(
    connection: Connection, space: EmbeddingSpace, after: bytes, limit: int
) -> list[EmbeddingCandidate]:
    """Referenced atoms of the space's modality with no vector in it, by atom id after `after`."""
    rows = connection.execute(
        text(
            "SELECT a.atom_id, a.modality, a.canonical_text, a.size_bytes "
            "FROM atoms a WHERE a.modality = :modality AND a.atom_id > :after "
            "AND EXISTS (SELECT 1 FROM atom_reference_counts r "
            "            WHERE r.atom_id = a.atom_id AND r.reference_count > 0) "
            "AND (a.modality <> 'text' OR a.canonical_text IS NOT NULL) "
            "AND NOT EXISTS (SELECT 1 FROM atom_embeddings e "
            "                WHERE e.atom_id = a.atom_id AND e.space = :space) "
            "ORDER BY a.atom_id LIMIT :limit"
        ),
        {"modality": space.modality, "after": after, "space": space.name, "limit": limit},
    ).all()
    return [
        EmbeddingCandidate(bytes(r.atom_id), r.modality, r.canonical_text, r.size_bytes)
        for r in rows
    ]
