"""Image and audio feature vectors: shape, unit length, and what they are close for."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from hartonomous.embed.audio_features import AUDIO_DIMENSION, audio_features, log_mel_features
from hartonomous.embed.features import FeatureError, combine
from hartonomous.embed.image_features import IMAGE_DIMENSION, image_features


def _encoded(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **options)
    return out.getvalue()


def _picture(seed: int, side: int = 160) -> Image.Image:
    base = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((side, side), Image.Resampling.BICUBIC)


def test_image_vectors_are_unit_and_stable_under_reencoding() -> None:
    original = _picture(1)
    a = image_features(_encoded(original))
    b = image_features(_encoded(original.resize((97, 97)), "JPEG", quality=80))
    others = [image_features(_encoded(_picture(seed))) for seed in range(2, 8)]
    assert a.shape == (IMAGE_DIMENSION,)
    assert a.dtype == np.float32
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-5
    assert float(a @ b) > 0.9
    assert float(a @ b) > max(float(a @ other) for other in others)


def test_transparent_and_flat_images_are_described() -> None:
    flat = image_features(_encoded(Image.new("RGB", (50, 50), (200, 30, 30))))
    clear = image_features(_encoded(Image.new("RGBA", (50, 50), (0, 0, 0, 0))))
    white = image_features(_encoded(Image.new("RGB", (50, 50), (255, 255, 255))))
    assert abs(float(np.linalg.norm(flat)) - 1.0) < 1e-5
    assert float(clear @ white) > 0.999  # transparent pixels count as white


def test_undecodable_image_is_refused() -> None:
    with pytest.raises(FeatureError, match="unreadable image"):
        image_features(b"not an image")


def _wav(signal: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, signal, rate, format="WAV")
    return out.getvalue()


def test_audio_vectors_ignore_level_and_tell_sounds_apart() -> None:
    time = np.arange(16000) / 16000
    quiet = audio_features(_wav(0.1 * np.sin(2 * np.pi * 440 * time)))
    loud = audio_features(_wav(0.6 * np.sin(2 * np.pi * 440 * time)))
    high = audio_features(_wav(0.3 * np.sin(2 * np.pi * 3000 * time)))
    noise = audio_features(_wav(0.3 * np.random.default_rng(0).standard_normal(16000)))
    assert quiet.shape == (AUDIO_DIMENSION,)
    assert float(quiet @ loud) > 0.95
    assert float(quiet @ loud) > float(quiet @ high)
    assert float(quiet @ loud) > float(quiet @ noise)


def test_any_sample_rate_shares_the_band_layout() -> None:
    for rate in (8000, 22050, 44100):
        time = np.arange(rate // 2) / rate
        assert log_mel_features(np.sin(2 * np.pi * 440 * time), rate).shape == (AUDIO_DIMENSION,)


def test_silence_and_garbage_are_refused() -> None:
    with pytest.raises(FeatureError, match="silent"):
        audio_features(_wav(np.zeros(16000)))
    with pytest.raises(FeatureError, match="unreadable audio"):
        audio_features(b"RIFF....garbage")


def test_non_finite_values_give_a_finite_vector_or_a_clear_refusal() -> None:
    rate = 16000
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    damaged = tone.copy()
    damaged[::1000] = np.nan
    damaged[1::1000] = np.inf
    out = io.BytesIO()
    soundfile.write(out, damaged, rate, format="WAV", subtype="FLOAT")
    vector = audio_features(out.getvalue())
    assert np.all(np.isfinite(vector))
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5

    all_nan = Image.fromarray(np.full((32, 32), np.nan, dtype=np.float32))
    with pytest.raises(FeatureError, match="no finite pixel values"):
        image_features(_encoded(all_nan, "TIFF"))
    with pytest.raises(FeatureError, match="non-finite feature values"):
        combine([(1.0, np.array([1.0, np.inf]))])


def test_a_16_bit_image_matches_its_8_bit_twin() -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint16), (48, 1))
    wide = image_features(_encoded(Image.fromarray(ramp * 257)))
    narrow = image_features(_encoded(Image.fromarray(ramp.astype(np.uint8))))
    assert float(wide @ narrow) > 0.999


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L"])
def test_a_huge_image_is_described_like_its_small_copy(mode: str) -> None:
    """Features come from the image reduced to a working size, strip by strip; a large image
    and a small copy of it (the near-duplicate case) stay close, in every colour mode."""
    large = _picture(3, side=2600)
    if mode == "RGBA":
        large.putalpha(Image.linear_gradient("L").resize(large.size))
    converted = large.convert(mode) if mode != "RGBA" else large
    small = converted.resize((300, 300))
    others = [image_features(_encoded(_picture(seed, side=300).convert(mode))) for seed in (4, 5)]
    a = image_features(_encoded(converted))
    b = image_features(_encoded(small))
    assert float(a @ b) > 0.95
    assert float(a @ b) > max(float(a @ other) for other in others)


_PEAK_SCRIPT = """
import resource, sys
from hartonomous.embed.image_features import image_features
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image_features(data)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_huge_transparent_image_costs_little_beyond_its_decoded_frame(tmp_path: Path) -> None:
    """A 9400x9400 RGBA PNG of 370 KB (88 megapixels, 353 MB decoded) once grew the process
    by 1.3 GB: full-size conversions, compositing and a premultiplied copy. Now the frame is
    reduced a strip at a time, so the growth is the decoded frame and little more."""
    side = 9400
    path = tmp_path / "huge.png"
    Image.new("RGBA", (side, side), (10, 20, 30, 128)).save(path, "PNG")
    decoded_kib = side * side * 4 // 1024
    grown_kib = int(
        subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert grown_kib < decoded_kib + 128 * 1024, f"grew {grown_kib // 1024} MiB"
