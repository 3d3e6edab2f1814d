"""Embedding spaces: named vector spaces, one per kind of content, never mixed.

Each space is a row of `embedding_spaces` (migration 0006, which also creates its own HNSW index)
and an entry here saying which atoms it embeds. Vectors of different spaces are not comparable:
a text query is answered from the text space only, an image from the image space only.
"""

from __future__ import annotations

from dataclasses import dataclass

from hartonomous.embed.audio_features import AUDIO_DIMENSION, AUDIO_SPACE
from hartonomous.embed.image_features import IMAGE_DIMENSION, IMAGE_SPACE
from hartonomous.errors import UsageError

# Also text_model.MINILM_SPACE; repeated so that this registry does not import ONNX Runtime.
TEXT_SPACE = "minilm-l6-v2"


class UnknownSpaceError(UsageError, LookupError):
    """A space name that is not registered."""


@dataclass(frozen=True)
class EmbeddingSpace:
    name: str
    dimension: int
    modality: str
    """Atoms of this modality get a vector in this space (text atoms need canonical text)."""
    description: str


SPACES: tuple[EmbeddingSpace, ...] = (
    EmbeddingSpace(
        TEXT_SPACE,
        384,
        "text",
        "all-MiniLM-L6-v2 sentence embeddings (mean pooled, L2-normalised)",
    ),
    EmbeddingSpace(
        IMAGE_SPACE,
        IMAGE_DIMENSION,
        "image",
        "HSV colour histogram + gradient-orientation texture + DCT perceptual hash",
    ),
    EmbeddingSpace(
        AUDIO_SPACE,
        AUDIO_DIMENSION,
        "audio",
        "log-mel band statistics: spectral shape, spread and change over time",
    ),
)

_BY_NAME = {space.name: space for space in SPACES}
_BY_MODALITY = {space.modality: space for space in SPACES}


def get_space(name: str) -> EmbeddingSpace:
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise UnknownSpaceError(f"unknown embedding space {name!r} (known: {known})") from None


def space_for_modality(modality: str) -> EmbeddingSpace | None:
    """The space that embeds atoms of ``modality``, if any."""
    return _BY_MODALITY.get(modality)
