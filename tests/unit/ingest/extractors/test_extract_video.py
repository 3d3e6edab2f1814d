"""Video through imageio-ffmpeg's bundled ffmpeg; test media are encoded by that same ffmpeg."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest
import soundfile
from PIL import Image

from hartonomous.ingest.extractors import ExtractionError, extract


def _encode(target: Path, *arguments: str) -> Path:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *arguments]
    subprocess.run([*command, str(target)], check=True, capture_output=True)
    return target


def _video(target: Path, seconds: int, *, audio: bool) -> Path:
    inputs = ["-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={seconds}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=22050"]
    codecs = ["-c:v", "libx264", "-pix_fmt", "yuv420p"] + (["-c:a", "aac"] if audio else [])
    return _encode(target, *inputs, *codecs)


def test_video_metadata_keyframes_and_audio_track(tmp_path: Path) -> None:
    path = _video(tmp_path / "clip.mp4", seconds=12, audio=True)

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("video", "mp4")
    metadata = extraction.metadata
    assert metadata["duration_seconds"] == pytest.approx(12, abs=0.1)
    assert metadata["video"] == {"codec": "h264", "width": 64, "height": 48, "fps": 10.0}
    assert metadata["audio"] == {"codec": "aac", "sample_rate": 22050, "channel_layout": "mono"}
    frames = [item for item in extraction.derived if item.modality == "image"]
    # One frame at the start, then one every max(5 s, 12 s / 10) = 5 s.
    assert [frame.metadata["time_seconds"] for frame in frames] == pytest.approx([0, 5, 10])
    assert metadata["keyframe_count"] == 3
    with Image.open(io.BytesIO(frames[0].data)) as image:
        assert (image.format, image.size) == ("PNG", (64, 48))
    (track,) = [item for item in extraction.derived if item.modality == "audio"]
    assert track.subtype == "flac"
    assert track.metadata["sample_rate"] == 22050
    assert track.metadata["duration_seconds"] == pytest.approx(12, abs=0.1)
    decoded, rate = soundfile.read(io.BytesIO(track.data))
    assert rate == 22050
    assert len(decoded) == track.metadata["frames"]


def test_video_without_audio_has_only_keyframes(tmp_path: Path) -> None:
    path = _video(tmp_path / "silent.mkv", seconds=2, audio=False)

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("video", "matroska")
    assert extraction.metadata["audio"] is None
    assert [item.modality for item in extraction.derived] == ["image"]


def test_audio_only_container_is_audio(tmp_path: Path) -> None:
    path = _encode(
        tmp_path / "voice.m4a",
        *("-f", "lavfi", "-i", "sine=frequency=220:duration=1", "-c:a", "aac"),
    )

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("audio", "m4a")
    assert extraction.metadata["video"] is None
    assert [item.subtype for item in extraction.derived] == ["flac"]


def test_truncated_video_fails(tmp_path: Path) -> None:
    whole = _video(tmp_path / "whole.mp4", seconds=3, audio=True)
    path = tmp_path / "cut.mp4"
    path.write_bytes(whole.read_bytes()[:4000])

    with pytest.raises(ExtractionError, match="corrupt media"):
        extract(path)
