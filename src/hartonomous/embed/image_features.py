"""Image feature vectors (space ``image-features-v1``, 168 dimensions): no learned model.

Three blocks, each of unit length, weighted so that the cosine of two images is
``0.5 * colour + 0.3 * texture + 0.2 * perceptual hash``:

- colour (72): HSV histogram, 8 hue x 3 saturation x 3 value bins over a 128x128 resize,
  square-rooted (so the cosine of two histograms is their Bhattacharyya coefficient);
- texture (32): gradient orientations (8 unsigned bins, weighted by gradient magnitude) in each
  cell of a 2x2 grid of the grey image;
- perceptual hash (64): the classic DCT pHash (32x32 grey, the 8x8 lowest frequencies compared
  with their median) as +-1/8, so its cosine is ``1 - 2 * hamming / 64``.

Near-identical images (re-encodings, resizes, small edits) come out very close; images that
merely share a palette or a texture come out close too. It says nothing about what an image
*shows*: there is no text-to-image search in this space.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from hartonomous.embed.features import FeatureError, combine

IMAGE_SPACE = "image-features-v1"
IMAGE_DIMENSION = 168

_SIDE = 128
# Features are computed from the image reduced to this many pixels a side at most: plenty for
# a 128x128 histogram/texture and a 32x32 hash, and it bounds memory for huge images.
_WORKING_SIDE = 512
_STRIP_BOXES = 32  # boxes of the reduction per strip of rows
_HUE_BINS, _SATURATION_BINS, _VALUE_BINS = 8, 3, 3
_ORIENTATION_BINS = 8
_GRID = 2
_HASH_SIDE, _HASH_LOW = 32, 8
_SHARES = (0.5, 0.3, 0.2)
# Single-channel modes deeper than 8 bits (Pillow's names): scaled by ``_eight_bit``.
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


def image_features(data: bytes) -> npt.NDArray[np.float32]:
    """The 168-d unit vector of an encoded image (any format Pillow reads; first frame).

    Computed from the image reduced to at most ``_WORKING_SIDE`` pixels a side (antialiased,
    alpha-weighted), so memory beyond the decoded frame stays small however large the image:
    a 9400x9400 RGBA PNG (88 megapixels) used to peak 1.3 GB above its decode.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (_SIDE * 2, _SIDE * 2))  # JPEG: decode at reduced size, faster
            rgb = _flatten(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FeatureError(f"unreadable image: {exc}") from exc
    small = rgb.resize((_SIDE, _SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return combine(
        [
            (_SHARES[0], _colour_histogram(small)),
            (_SHARES[1], _texture(np.asarray(small.convert("L"), dtype=np.float64))),
            (_SHARES[2], _perceptual_hash(rgb)),
        ]
    )


def _flatten(image: Image.Image) -> Image.Image:
    """RGB of the first frame, at most ``_WORKING_SIDE`` a side; transparent pixels count as
    white, as viewers show them."""
    image.seek(0)
    if image.mode in _WIDE_MODES:
        # Scaled from the whole frame's range first (it needs every value; these are rare).
        return _reduced(_eight_bit(image), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Box-reducing RGBA weights colours by alpha (Pillow premultiplies), as compositing does.
        rgba = _reduced(image, "RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return _reduced(image, "L" if image.mode == "L" else "RGB").convert("RGB")


def _reduced(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode``, box-reduced by a whole factor to at most ``_WORKING_SIDE`` a side.

    Done a strip of rows at a time (each strip a whole number of boxes high, so the result is
    exactly the whole-image reduction): the conversion to ``mode`` and the premultiplied copy
    of an RGBA image never exist at full size, only the decoded frame does.
    """
    factor = -(-max(image.size) // _WORKING_SIDE)
    if factor == 1:
        return image if image.mode == mode else image.convert(mode)
    width, height = image.size
    reduced = Image.new(mode, (-(-width // factor), -(-height // factor)))
    rows = factor * _STRIP_BOXES
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        reduced.paste(strip.convert(mode).reduce(factor), (0, top // factor))
    return reduced


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float grey image as 8-bit grey, scaled from its real range.

    Pillow's own conversion clips at 255, so a 16-bit image comes out nearly all white. The
    range is the 16-bit one for 16-bit data (so an image and its 8-bit twin agree); for 32-bit
    integers and floats it is [0, 1] when every finite value lies there (the float convention),
    else the finite minimum to maximum. NaN pixels take the median of the finite ones and
    infinities the ends of the range, so features describe the finite values.
    """
    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        raise FeatureError("no finite pixel values")
    real = values[finite]
    low, high = float(real.min()), float(real.max())
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        low, high = 0.0, 65535.0
    elif low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    values = np.nan_to_num(values, nan=float(np.median(real)), posinf=high, neginf=low)
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _colour_histogram(rgb: Image.Image) -> npt.NDArray[np.float64]:
    hsv = np.asarray(rgb.convert("HSV"), dtype=np.int64).reshape(-1, 3)
    hue = hsv[:, 0] * _HUE_BINS // 256
    saturation = hsv[:, 1] * _SATURATION_BINS // 256
    value = hsv[:, 2] * _VALUE_BINS // 256
    index = (hue * _SATURATION_BINS + saturation) * _VALUE_BINS + value
    counts = np.bincount(index, minlength=_HUE_BINS * _SATURATION_BINS * _VALUE_BINS)
    histogram: npt.NDArray[np.float64] = np.sqrt(counts / counts.sum())
    return histogram


def _texture(grey: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    gx = grey[1:-1, 2:] - grey[1:-1, :-2]
    gy = grey[2:, 1:-1] - grey[:-2, 1:-1]
    magnitude = np.hypot(gx, gy)
    orientation = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned: an edge and its reverse agree
    bins = np.minimum((orientation / np.pi * _ORIENTATION_BINS).astype(np.int64), 7)
    rows, columns = magnitude.shape
    cells = []
    for row in range(_GRID):
        for column in range(_GRID):
            window = (
                slice(row * rows // _GRID, (row + 1) * rows // _GRID),
                slice(column * columns // _GRID, (column + 1) * columns // _GRID),
            )
            cells.append(
                np.bincount(
                    bins[window].ravel(),
                    weights=magnitude[window].ravel(),
                    minlength=_ORIENTATION_BINS,
                )
            )
    return np.concatenate(cells)


@cache
def _dct_matrix(size: int) -> npt.NDArray[np.float64]:
    """Orthonormal DCT-II matrix: ``M @ x`` is the DCT of the column vector ``x``."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    matrix: npt.NDArray[np.float64] = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(
        2.0 / size
    )
    matrix[0] /= np.sqrt(2.0)
    return matrix


def _perceptual_hash(rgb: Image.Image) -> npt.NDArray[np.float64]:
    grey = rgb.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    dct = _dct_matrix(_HASH_SIDE)
    low = (dct @ pixels @ dct.T)[:_HASH_LOW, :_HASH_LOW].ravel()
    bits = low > np.median(low)
    return np.where(bits, 1.0, -1.0) / _HASH_LOW
