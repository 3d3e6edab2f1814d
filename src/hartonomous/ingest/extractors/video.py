"""Video (and audio-only media containers) through the ffmpeg binary shipped by imageio-ffmpeg.

That wheel ships ``ffmpeg`` but not ``ffprobe``, so stream facts come from the input summary
``ffmpeg -i`` prints. Keyframes are the first frame and then one frame every
``max(5 s, duration / 10)`` (at most ten), returned as PNG images with their timestamps; the
first audio track is decoded to 16-bit FLAC and returned as an audio item. A container with
audio but no video (``.m4a``) is reported with modality ``audio``. The decoded track is held in
memory, so a very long recording costs memory in proportion to its length.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import soundfile

from hartonomous.ingest.extractors.model import DerivedMedia, Extraction, ExtractionError
from hartonomous.json_types import JsonValue

MAX_KEYFRAMES = 10
MIN_KEYFRAME_INTERVAL_SECONDS = 5.0
# A hung ffmpeg (a pathological file) must not hold an ingestion worker forever.
FFMPEG_TIMEOUT_SECONDS = 600

_INPUT = re.compile(r"^Input #0, (.+), from ", re.MULTILINE)
_DURATION = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_BITRATE = re.compile(r"Duration: .*?bitrate: (\d+) kb/s")
_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio): (.*)$", re.MULTILINE)
_SIZE = re.compile(r", (\d{1,5})x(\d{1,5})\b")
_RATE = re.compile(r"([\d.]+)(k?) (?:fps|tbr)\b")
_AUDIO = re.compile(r", (\d+) Hz, ([^,]+)")
_FRAME_TIME = re.compile(r"Parsed_showinfo.*?\bpts_time:\s*(-?[\d.]+)")


@dataclass(frozen=True)
class _Probe:
    container: str
    duration: float | None
    bitrate_kbps: int | None
    video: dict[str, JsonValue] | None
    audio: dict[str, JsonValue] | None


def extract_video(path: Path, subtype: str) -> Extraction:
    """Stream metadata, keyframes and the audio track of the media file at ``path``."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    source = f"file:{path.resolve()}"
    probe = _probe(ffmpeg, source)
    if probe.video is None and probe.audio is None:
        raise ExtractionError("media container without a video or audio stream")
    derived: list[DerivedMedia] = []
    with tempfile.TemporaryDirectory(prefix="hartonomous-video-") as scratch:
        if probe.video is not None:
            derived.extend(_keyframes(ffmpeg, source, Path(scratch), probe.duration))
        if probe.audio is not None:
            derived.append(_audio_track(ffmpeg, source, Path(scratch), probe.audio))
    metadata: dict[str, JsonValue] = {
        "container": probe.container,
        "duration_seconds": probe.duration,
        "bitrate_kbps": probe.bitrate_kbps,
        "video": probe.video,
        "audio": probe.audio,
        "keyframe_count": sum(1 for item in derived if item.modality == "image"),
    }
    modality = "video" if probe.video is not None else "audio"
    return Extraction(modality, subtype, metadata, (), tuple(derived))


def _probe(ffmpeg: str, source: str) -> _Probe:
    # Without an output ffmpeg prints the input summary and exits non-zero by design.
    summary = _run([ffmpeg, "-hide_banner", "-nostdin", "-i", source], expect_success=False)
    container = _INPUT.search(summary)
    if container is None:
        raise ExtractionError(f"unreadable or corrupt media: {_last_line(summary)}")
    duration = _DURATION.search(summary)
    bitrate = _BITRATE.search(summary)
    video: dict[str, JsonValue] | None = None
    audio: dict[str, JsonValue] | None = None
    for kind, description in _STREAM.findall(summary):
        codec = description.split(maxsplit=1)[0].rstrip(",")
        # Cover art in audio files is listed as a one-frame video stream.
        if kind == "Video" and video is None and "(attached pic)" not in description:
            video = {"codec": codec, **_video_facts(description)}
        elif kind == "Audio" and audio is None:
            audio = {"codec": codec, **_audio_facts(description)}
    return _Probe(
        container=container.group(1),
        duration=_seconds(*duration.groups()) if duration else None,
        bitrate_kbps=int(bitrate.group(1)) if bitrate else None,
        video=video,
        audio=audio,
    )


def _video_facts(description: str) -> dict[str, JsonValue]:
    facts: dict[str, JsonValue] = {}
    size = _SIZE.search(description)
    if size is not None:
        facts["width"], facts["height"] = int(size.group(1)), int(size.group(2))
    rate = _RATE.search(description)
    if rate is not None:
        facts["fps"] = float(rate.group(1)) * (1000 if rate.group(2) else 1)
    return facts


def _audio_facts(description: str) -> dict[str, JsonValue]:
    found = _AUDIO.search(description)
    if found is None:
        return {}
    return {"sample_rate": int(found.group(1)), "channel_layout": found.group(2).strip()}


def _keyframes(
    ffmpeg: str, source: str, scratch: Path, duration: float | None
) -> list[DerivedMedia]:
    interval = max(MIN_KEYFRAME_INTERVAL_SECONDS, (duration or 0.0) / MAX_KEYFRAMES)
    # Keep the first frame, then each frame at least `interval` after the last one kept;
    # showinfo reports the kept frames' timestamps.
    select = f"select='isnan(prev_selected_t)+gte(t-prev_selected_t,{interval:.6f})',showinfo"
    pattern = scratch / "keyframe-%03d.png"
    diagnostics = _run(
        [
            ffmpeg, "-hide_banner", "-nostdin", "-v", "info", "-i", source, "-map", "0:v:0",
            "-vf", select, "-fps_mode", "vfr", "-frames:v", str(MAX_KEYFRAMES), str(pattern),
        ]
    )  # fmt: skip
    frames = sorted(scratch.glob("keyframe-*.png"))
    if not frames:
        raise ExtractionError("video stream has no decodable frames")
    times = [float(found) for found in _FRAME_TIME.findall(diagnostics)]
    return [
        DerivedMedia(
            "image",
            "png",
            frame.read_bytes(),
            {"index": index, "time_seconds": times[index] if index < len(times) else None},
        )
        for index, frame in enumerate(frames)
    ]


def _audio_track(
    ffmpeg: str, source: str, scratch: Path, stream: dict[str, JsonValue]
) -> DerivedMedia:
    # A file (not a pipe) lets ffmpeg seek back and write the FLAC frame count.
    target = scratch / "audio.flac"
    _run(
        [
            ffmpeg, "-nostdin", "-v", "error", "-i", source, "-map", "0:a:0", "-vn",
            "-c:a", "flac", "-sample_fmt", "s16", str(target),
        ]
    )  # fmt: skip
    try:
        info = soundfile.info(str(target))
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise ExtractionError(f"audio track did not decode: {exc}") from exc
    metadata: dict[str, JsonValue] = {
        "source_codec": stream["codec"],
        "sample_rate": info.samplerate,
        "channels": info.channels,
        "frames": info.frames,
        "duration_seconds": info.frames / info.samplerate,
    }
    return DerivedMedia("audio", "flac", target.read_bytes(), metadata)


def _run(command: list[str], *, expect_success: bool = True) -> str:
    """Run ffmpeg and return its diagnostics; a failure raises with ffmpeg's last message."""
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            timeout=FFMPEG_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ExtractionError(f"ffmpeg did not finish within {FFMPEG_TIMEOUT_SECONDS} s") from exc
    diagnostics = completed.stderr.decode("utf-8", errors="replace")
    if expect_success and completed.returncode != 0:
        raise ExtractionError(f"ffmpeg failed: {_last_line(diagnostics)}")
    return diagnostics


def _seconds(hours: str, minutes: str, seconds: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no diagnostics"
