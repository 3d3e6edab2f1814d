"""Embeddings: text vectors from all-MiniLM-L6-v2 (run without torch), image and audio features.

The text model's names are imported on first use: ONNX Runtime and tokenizers cost a quarter
of a second to import, which commands that never embed text should not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hartonomous.embed.text_model import (
        MINILM_SPACE,
        MiniLMTextEmbedder,
        TextEmbeddings,
        TextModelError,
    )

__all__ = ["MINILM_SPACE", "MiniLMTextEmbedder", "TextEmbeddings", "TextModelError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("hartonomous.embed.text_model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
