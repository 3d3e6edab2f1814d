"""Media values real files hold: non-finite samples and pixels, 16-bit and float images, and
WAV files written while streaming. Every file is stored, described and found."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from PIL import Image
from sqlalchemy import Engine, text
from tests.integration.data_plane.data_plane_support import add_tenant, by_name, ingest

from hartonomous.ingest.examples import read_example
from hartonomous.search.service import Query, search

_RATE = 8000


def _atom_metadata(engine: Engine, atom_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        found: dict[str, Any] = connection.execute(
            text("SELECT metadata FROM atoms WHERE atom_id = decode(:id, 'hex')"), {"id": atom_id}
        ).scalar_one()
    return found


def _chirp(seconds: float = 1.0) -> np.ndarray[Any, np.dtype[np.float32]]:
    time = np.arange(int(_RATE * seconds)) / _RATE
    return (0.4 * np.sin(2 * np.pi * (200 + 600 * time) * time)).astype(np.float32)


def _float_wav(path: Path, samples: np.ndarray[Any, np.dtype[np.float32]]) -> Path:
    soundfile.write(path, samples, _RATE, subtype="FLOAT")
    return path


def _streamed(path: Path, samples: np.ndarray[Any, np.dtype[np.float32]], subtype: str) -> Path:
    """A WAV whose RIFF and data sizes are 0, as a writer that cannot seek back leaves them."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, _RATE, format="WAV", subtype=subtype)
    data = bytearray(buffer.getvalue())
    data[4:8] = struct.pack("<I", 0)
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0)
    path.write_bytes(bytes(data))
    return path


def test_non_finite_samples_and_pixels_never_reject_a_file(engine: Engine, tmp_path: Path) -> None:
    acme = add_tenant(engine, "acme")
    with_nan = _chirp()
    with_nan[1000:1010] = np.nan  # the example: ten NaN samples in a float32 WAV
    with_infinity = _chirp()
    with_infinity[[5, 500, 5000]] = [np.inf, -np.inf, np.inf]
    gradient = np.tile(np.linspace(0.0, 1.0, 128, dtype=np.float32), (96, 1))
    gradient[10:12, 10:40] = np.nan
    gradient[50, 50] = np.inf
    Image.fromarray(gradient).save(tmp_path / "float.tiff")
    outcome = ingest(
        engine,
        acme,
        _float_wav(tmp_path / "nan.wav", with_nan),
        _float_wav(tmp_path / "inf.wav", with_infinity),
        tmp_path / "float.tiff",
    )

    files = by_name(outcome)
    assert {name: (f.status, f.embedded) for name, f in files.items()} == {
        "nan.wav": ("ingested", 1),
        "inf.wav": ("ingested", 1),
        "float.tiff": ("ingested", 1),
    }
    assert _atom_metadata(engine, str(files["nan.wav"].atom_id))["non_finite_samples"] == 10
    assert _atom_metadata(engine, str(files["inf.wav"].atom_id))["non_finite_samples"] == 3
    assert _atom_metadata(engine, str(files["float.tiff"].atom_id))["non_finite_pixels"] == 61
    # Described by their finite values: the clean chirp finds the damaged ones first.
    clean = _float_wav(tmp_path / "clean.wav", _chirp())
    hits = search(engine, acme, Query(like=read_example(clean)), 2).hits
    assert {Path(hit.source).name for hit in hits} == {"nan.wav", "inf.wav"}
    assert min(hit.score for hit in hits) > 0.95  # zeroed samples are clicks: close, not equal


def test_16_bit_and_float_images_find_their_8_bit_twin(engine: Engine, tmp_path: Path) -> None:
    acme = add_tenant(engine, "acme")
    ramp = np.tile(np.arange(256, dtype=np.uint16), (64, 1))
    Image.fromarray(ramp.astype(np.uint8)).save(tmp_path / "twin.png")
    # What the 16-bit image used to look like to the features: nearly all white.
    Image.new("L", (256, 64), 255).save(tmp_path / "white.png")
    Image.fromarray((255 - ramp).astype(np.uint8)).save(tmp_path / "reversed.png")
    Image.fromarray(np.full((64, 256), 90, dtype=np.uint8)).save(tmp_path / "grey.png")
    outcome = ingest(
        engine, acme, *(tmp_path / n for n in ("twin.png", "white.png", "reversed.png", "grey.png"))
    )
    assert all(f.embedded == 1 for f in outcome.files)

    wide = tmp_path / "wide.png"
    Image.fromarray(ramp * 257).save(wide)  # 16-bit grey, the same ramp over 0-65535
    assert Image.open(wide).mode.startswith("I;16")
    floating = tmp_path / "floating.tiff"
    Image.fromarray(ramp.astype(np.float32) / 255).save(floating)  # float grey in [0, 1]
    for probe in (wide, floating):
        hits = search(engine, acme, Query(like=read_example(probe)), 4).hits
        assert Path(hits[0].source).name == "twin.png", (probe.name, hits)
        assert hits[0].score > 0.99


def test_a_wav_written_while_streaming_yields_the_samples_it_holds(
    engine: Engine, tmp_path: Path
) -> None:
    acme = add_tenant(engine, "acme")
    samples = _chirp()  # 8,000 samples, which used to be reported as 0 frames and not embedded
    pcm = _streamed(tmp_path / "streamed-pcm.wav", samples, "PCM_16")
    floating = _streamed(tmp_path / "streamed-float.wav", samples, "FLOAT")  # has a fact chunk
    outcome = ingest(engine, acme, pcm, floating)

    for name, file in by_name(outcome).items():
        assert (file.status, file.embedded) == ("ingested", 1), name
        metadata = _atom_metadata(engine, str(file.atom_id))
        assert metadata["frames"] == 8000, name
        assert "written while streaming" in metadata["note"]
    complete = _float_wav(tmp_path / "complete.wav", samples)
    hits = search(engine, acme, Query(like=read_example(complete)), 2).hits
    assert min(hit.score for hit in hits) > 0.99
