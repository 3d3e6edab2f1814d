"""Images (Pillow): format, size, mode, frame count and EXIF made JSON-safe.

Every frame is decoded, so a truncated or corrupt image fails here instead of later. An image
with more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS`` is refused as a decompression bomb:
Pillow only warns between one and two times that limit, so the warning is raised as an error
for the duration of the read instead of letting a huge allocation through.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, TiffImagePlugin

from hartonomous.ingest.extractors.model import Extraction, ExtractionError
from hartonomous.json_types import JsonValue

# Opaque EXIF blobs (MakerNote, thumbnails) longer than this are dropped; shorter ones are hex.
_MAX_EXIF_BYTES = 64
_SUB_IFDS = {
    ExifTags.IFD.Exif: ExifTags.TAGS,
    ExifTags.IFD.GPSInfo: ExifTags.GPSTAGS,
    ExifTags.IFD.Interop: ExifTags.TAGS,
}


def extract_image(path: Path) -> Extraction:
    """Metadata of the image at ``path`` after decoding all of its frames."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                frame_count = getattr(image, "n_frames", 1)
                metadata: dict[str, JsonValue] = {
                    "format": image.format,
                    "width": image.width,
                    "height": image.height,
                    "mode": image.mode,
                    "frame_count": frame_count,
                    "exif": _exif(image.getexif()),
                }
                non_finite = 0
                for index in range(frame_count):
                    image.seek(index)
                    image.load()
                    if image.mode == "F":
                        pixels = np.asarray(image)
                        non_finite += int(pixels.size - np.count_nonzero(np.isfinite(pixels)))
                if non_finite:
                    # Stored as they are; image features use the finite values only.
                    metadata["non_finite_pixels"] = non_finite
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ExtractionError(f"image refused as a decompression bomb: {exc}") from exc
    except Exception as exc:
        # Pillow's format plugins report damage as OSError, SyntaxError, ValueError, EOFError,
        # struct.error and more, depending on the format.
        raise ExtractionError(f"unreadable or corrupt image: {type(exc).__name__}: {exc}") from exc
    subtype = str(metadata["format"] or "unknown").lower()
    return Extraction("image", subtype, metadata, (), ())


def _exif(exif: Image.Exif) -> dict[str, JsonValue]:
    """Named EXIF tags: the main IFD, then the Exif, GPS and interoperability IFDs nested."""
    result = _named(dict(exif), ExifTags.TAGS)
    for ifd, names in _SUB_IFDS.items():
        entries = exif.get_ifd(ifd)
        if entries:
            result[ifd.name] = _named(entries, names)
    return result


def _named(entries: dict[int, object], names: dict[int, str]) -> dict[str, JsonValue]:
    named: dict[str, JsonValue] = {}
    for tag, value in entries.items():
        # Sub-IFD pointers are file offsets, meaningless once the IFD is read; long byte blobs
        # are opaque.
        if tag in _SUB_IFDS or (isinstance(value, bytes) and len(value) > _MAX_EXIF_BYTES):
            continue
        named[names.get(tag, str(tag))] = _json_safe(value)
    return named


def _json_safe(value: object) -> JsonValue:
    if isinstance(value, TiffImagePlugin.IFDRational):
        # A zero denominator is how EXIF writes "unknown"; NaN becomes null just below.
        value = float(value) if value.denominator else math.nan
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.rstrip("\x00")
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list | dict):
        return _json_container(value)
    return str(value)


def _json_container(value: tuple[object, ...] | list[object] | dict[object, object]) -> JsonValue:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    return [_json_safe(item) for item in value]
