"""Images written with Pillow, and the damaged ones that must fail."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image, TiffImagePlugin

from hartonomous.ingest.extractors import ExtractionError, extract


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    checksum = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum)


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header for a huge greyscale image with a tiny (bogus) pixel stream."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def test_png_metadata(tmp_path: Path) -> None:
    path = tmp_path / "pixel.png"
    Image.new("RGBA", (31, 17), (10, 20, 30, 255)).save(path)

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("image", "png")
    assert extraction.metadata == {
        "format": "PNG",
        "width": 31,
        "height": 17,
        "mode": "RGBA",
        "frame_count": 1,
        "exif": {},
    }


def test_jpeg_exif_is_json_safe(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Hartonomous Camera"
    exif[ExifTags.Base.XResolution] = TiffImagePlugin.IFDRational(72, 1)
    exif[ExifTags.Base.MakerNote] = b"\x01" * 500  # opaque blob: dropped
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.ExposureTime] = TiffImagePlugin.IFDRational(
        1, 250
    )
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.ExifVersion] = b"0231"
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), "navy").save(path, exif=exif)

    extraction = extract(path)

    assert (extraction.subtype, extraction.metadata["width"]) == ("jpeg", 64)
    recorded = extraction.metadata["exif"]
    assert isinstance(recorded, dict)
    assert recorded["Make"] == "Hartonomous Camera"
    assert recorded["XResolution"] == 72.0
    assert "MakerNote" not in recorded
    assert recorded["Exif"] == {"ExposureTime": 0.004, "ExifVersion": b"0231".hex()}


def test_animated_gif_counts_frames(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "green", "blue")]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)

    extraction = extract(path)

    assert extraction.subtype == "gif"
    assert extraction.metadata["frame_count"] == 3


@pytest.mark.parametrize(("name", "image_format"), [("cut.png", "PNG"), ("cut.jpg", "JPEG")])
def test_truncated_images_fail(tmp_path: Path, name: str, image_format: str) -> None:
    whole = tmp_path / f"whole-{name}"
    Image.effect_noise((128, 128), 64).convert("RGB").save(whole, format=image_format)
    data = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(ExtractionError, match="corrupt image"):
        extract(path)


def test_png_with_a_broken_signature_fails_as_an_image(tmp_path: Path) -> None:
    path = tmp_path / "mangled.png"
    path.write_bytes(b"not really a png at all\n")

    with pytest.raises(ExtractionError, match="corrupt image"):
        extract(path)


@pytest.mark.parametrize(
    "side",
    [
        10_000,  # 1e8 pixels: over MAX_IMAGE_PIXELS, where Pillow itself only warns
        100_000,  # 1e10 pixels: where Pillow raises
    ],
)
def test_decompression_bomb_is_refused(tmp_path: Path, side: int) -> None:
    assert Image.MAX_IMAGE_PIXELS is not None
    assert side * side > Image.MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(side, side))

    with pytest.raises(ExtractionError, match="decompression bomb"):
        extract(path)
