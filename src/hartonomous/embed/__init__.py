"""Embeddings: text vectors from all-MiniLM-L6-v2, run without torch."""

from hartonomous.embed.text_model import (
    MINILM_SPACE,
    MiniLMTextEmbedder,
    TextEmbeddings,
    TextModelError,
)

__all__ = ["MINILM_SPACE", "MiniLMTextEmbedder", "TextEmbeddings", "TextModelError"]
