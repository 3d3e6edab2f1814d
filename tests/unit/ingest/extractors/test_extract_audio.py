"""Audio written with soundfile, and the damaged files that must fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from hartonomous.ingest.extractors import ExtractionError, extract

RATE = 8000


def _tone(seconds: float, channels: int) -> np.ndarray:
    time = np.arange(int(RATE * seconds)) / RATE
    wave = 0.25 * np.sin(2 * np.pi * 440 * time)
    return np.repeat(wave[:, None], channels, axis=1)


@pytest.mark.parametrize(
    ("name", "subtype", "encoding"),
    [("tone.wav", "wav", "PCM_16"), ("tone.flac", "flac", "PCM_16"), ("tone.ogg", "ogg", "VORBIS")],
)
def test_audio_metadata(tmp_path: Path, name: str, subtype: str, encoding: str) -> None:
    path = tmp_path / name
    soundfile.write(path, _tone(1.5, channels=2), RATE)

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("audio", subtype)
    assert extraction.metadata["sample_rate"] == RATE
    assert extraction.metadata["channels"] == 2
    assert extraction.metadata["frames"] == int(RATE * 1.5)
    assert extraction.metadata["duration_seconds"] == pytest.approx(1.5)
    assert extraction.metadata["encoding"] == encoding


@pytest.mark.parametrize("name", ["cut.wav", "cut.aiff", "cut.flac"])
def test_truncated_audio_fails(tmp_path: Path, name: str) -> None:
    whole = tmp_path / f"whole-{name}"
    soundfile.write(whole, np.random.default_rng(7).uniform(-0.5, 0.5, (RATE * 2, 1)), RATE)
    data = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])

    # libsndfile itself reports a cut FLAC stream; WAV and AIFF are caught by their chunk sizes.
    with pytest.raises(ExtractionError, match=r"truncated|lost sync"):
        extract(path)


def test_wav_with_a_destroyed_header_fails(tmp_path: Path) -> None:
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, _tone(0.5, channels=1), RATE)
    data = bytearray(whole.read_bytes())
    data[12:36] = b"\xff" * 24  # the fmt chunk
    path = tmp_path / "broken.wav"
    path.write_bytes(bytes(data))

    with pytest.raises(ExtractionError, match="audio"):
        extract(path)


def test_wav_cut_inside_its_header_fails(tmp_path: Path) -> None:
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, _tone(0.5, channels=1), RATE)
    path = tmp_path / "stub.wav"
    path.write_bytes(whole.read_bytes()[:30])

    with pytest.raises(ExtractionError, match="corrupt audio"):
        extract(path)


@pytest.mark.parametrize("channels", [1, 2])
def test_wav_written_while_streaming_reports_the_frames_it_holds(
    tmp_path: Path, channels: int
) -> None:
    path = tmp_path / "streamed.wav"
    soundfile.write(path, _tone(1.0, channels), RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[4:8] = bytes(4)  # RIFF size
    at = data.index(b"data")
    data[at + 4 : at + 8] = bytes(4)  # data size
    path.write_bytes(bytes(data))

    extraction = extract(path)

    assert extraction.metadata["frames"] == RATE
    assert extraction.metadata["channels"] == channels
    assert "written while streaming" in str(extraction.metadata["note"])


def test_non_finite_samples_are_counted_not_refused(tmp_path: Path) -> None:
    samples = _tone(1.0, 1).astype(np.float32)
    samples[100:110, 0] = np.nan
    samples[200, 0] = -np.inf
    path = tmp_path / "float.wav"
    soundfile.write(path, samples, RATE, subtype="FLOAT")

    extraction = extract(path)

    assert extraction.metadata["frames"] == RATE
    assert extraction.metadata["non_finite_samples"] == 11
