"""What image and audio feature extractors share: their error and how blocks are combined."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


class FeatureError(ValueError):
    """The content cannot be described in this space (undecodable, empty, silent)."""


def unit(block: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``block`` scaled to length 1; an all-zero block stays zero (it carries no direction)."""
    norm = float(np.linalg.norm(block))
    return block / norm if norm > 0.0 else block


def combine(blocks: Sequence[tuple[float, npt.NDArray[np.float64]]]) -> npt.NDArray[np.float32]:
    """Concatenate unit blocks scaled by sqrt(share), then normalise the whole.

    When every block is non-zero the cosine of two vectors is then exactly the share-weighted
    sum of the blocks' cosines, which is what the spaces document.
    """
    if not all(np.all(np.isfinite(block)) for _, block in blocks):
        # pgvector refuses NaN and infinity; content that still produces them gets a reason.
        raise FeatureError("non-finite feature values (NaN or infinity in the content)")
    parts = [np.sqrt(share) * unit(block) for share, block in blocks]
    vector = unit(np.concatenate(parts))
    if not np.any(vector):
        raise FeatureError("nothing to describe (every feature is zero)")
    return vector.astype(np.float32)
