"""Embedding use cases: texts to vectors (`embed`, `POST /v1/embed`) and the backfill.

Texts are embedded with the text space's model (all-MiniLM-L6-v2, docs/embed.md); a text the
model cannot see gets a reason instead of a vector, in its place in the answer, so one bad text
never fails the others.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hartonomous.embed.indexing import UNEMBEDDABLE_REASONS, shared_text_embedder
from hartonomous.embed.spaces import SPACES, TEXT_SPACE, EmbeddingSpace, get_space
from hartonomous.ingest.indexing import BackfillReport
from hartonomous.ingest.indexing import backfill as _backfill
from hartonomous.services.platform import Platform

if TYPE_CHECKING:  # onnxruntime loads with the model, on first use
    from hartonomous.embed.text_model import MiniLMTextEmbedder

__all__ = [
    "MAX_EMBED_CHARACTERS",
    "MAX_EMBED_TEXTS",
    "BackfillReport",
    "EmbeddedText",
    "backfill_embeddings",
    "embed_texts",
    "text_space",
]

_SURROGATE = re.compile("[\ud800-\udfff]")

MAX_EMBED_TEXTS = 256
"""Most texts in one API request (the CLI streams stdin in batches of this size)."""
MAX_EMBED_CHARACTERS = 10_000
"""Longest text accepted by the API (characters): the model reads only its first 256 word
pieces (~1,000 characters of English), so more is truncated anyway (docs/embed.md)."""


@dataclass(frozen=True)
class EmbeddedText:
    """One input text and its vector, or why it has none.

    ``vector`` has the text space's dimension (384 floats) and unit length; None with ``error``.
    ``token_count`` is the text's word pieces; over ``max_tokens`` only the first
    ``max_tokens`` were read and ``truncated`` is true.
    """

    text: str
    vector: list[float] | None
    error: str | None = None
    truncated: bool = False
    token_count: int = 0
    max_tokens: int = 0


def text_space() -> EmbeddingSpace:
    """The space `embed` writes vectors of (its name and dimension)."""
    return get_space(TEXT_SPACE)


def embed_texts(
    texts: Sequence[str | bytes],
    *,
    batch_size: int = 256,
    model: MiniLMTextEmbedder | None = None,
) -> list[EmbeddedText]:
    """One ``EmbeddedText`` per input, in order. Bytes are decoded as UTF-8: a text that is
    not UTF-8 gets an error naming the first bad byte (and is shown with replacement
    characters); so does a string with a lone surrogate, an empty text, or one made only of
    characters the model does not know.
    """
    model = model or shared_text_embedder()
    decoded: list[str] = []
    errors: list[str | None] = []
    for raw in texts:
        if isinstance(raw, str):
            decoded.append(raw)
            # A lone surrogate (possible in JSON's \uXXXX escapes) is no text the model reads.
            lone = _SURROGATE.search(raw)
            errors.append(
                None
                if lone is None
                else f"not Unicode text: lone surrogate U+{ord(lone.group()):04X} "
                f"at offset {lone.start()}"
            )
            continue
        try:
            decoded.append(raw.decode("utf-8"))
            errors.append(None)
        except UnicodeDecodeError as exc:
            decoded.append(raw.decode("utf-8", errors="replace"))
            errors.append(f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}")
    wanted = [index for index, error in enumerate(errors) if error is None]
    for index, ok in zip(wanted, model.embeddable([decoded[i] for i in wanted]), strict=True):
        if not ok:
            errors[index] = UNEMBEDDABLE_REASONS["no_word_pieces"]
    usable = [index for index, error in enumerate(errors) if error is None]
    encoded = model.encode([decoded[i] for i in usable], batch_size=min(batch_size, 256))
    rows: dict[int, int] = {}
    for position, index in enumerate(usable):
        # Only [UNK] word pieces: every such text gets nearly the same vector (cosine ~1).
        if encoded.unknown_only[position]:
            errors[index] = UNEMBEDDABLE_REASONS["unknown_word_pieces_only"]
        else:
            rows[index] = position
    results = []
    for index, value in enumerate(decoded):
        row = rows.get(index)
        if row is None:
            results.append(EmbeddedText(value, None, errors[index]))
            continue
        results.append(
            EmbeddedText(
                value,
                [float(x) for x in encoded.vectors[row]],
                truncated=encoded.truncated[row],
                token_count=encoded.token_counts[row],
                max_tokens=encoded.max_tokens,
            )
        )
    return results


def backfill_embeddings(
    platform: Platform, spaces: Sequence[EmbeddingSpace] = SPACES, *, batch_size: int = 256
) -> BackfillReport:
    """Embed stored atoms that have no vector yet in ``spaces``, then write their search
    entries (`ingest.indexing.backfill`: each batch commits on its own)."""
    return _backfill(platform.engine, spaces, batch_size=batch_size)
