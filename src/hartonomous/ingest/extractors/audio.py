"""Audio (soundfile / libsndfile): sample rate, channels, frames, duration and encoding.

The whole stream is decoded once so that corrupt data fails here. libsndfile quietly accepts a
WAV or AIFF cut short (it counts the frames that are present), so for those the size their
sound-data chunk declares is checked against the bytes the file really holds.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile

from hartonomous.embed.sound_file import open_sound
from hartonomous.ingest.extractors.model import Extraction, ExtractionError
from hartonomous.json_types import JsonValue

_BLOCK_FRAMES = 65536
# libsndfile container names to the subtypes used across extractors.
_SUBTYPES = {"WAV": "wav", "WAVEX": "wav", "RF64": "wav", "AIFF": "aiff", "MP3": "mp3"}
# Chunked containers: leading magic -> (integer byte order, id of the sound-data chunk).
_CHUNKED = {b"RIFF": ("<", b"data"), b"FORM": (">", b"SSND")}
# Writers that stream (cannot seek back) leave the data size as 0 or all ones.
_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})


def extract_audio(path: Path) -> Extraction:
    """Metadata of the audio file at ``path`` after decoding every frame."""
    size = path.stat().st_size
    decoded = non_finite = 0
    with path.open("rb") as stream:
        layout = _CHUNKED.get(stream.read(4))
        if layout is not None:
            _check_sound_data(stream, size, *layout)
        try:
            sound, repaired = open_sound(stream, size)
            with sound:
                while len(block := sound.read(_BLOCK_FRAMES, dtype="float32")):
                    decoded += len(block)
                    non_finite += int(block.size - np.count_nonzero(np.isfinite(block)))
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise ExtractionError(f"unreadable or corrupt audio: {exc}") from exc
    metadata: dict[str, JsonValue] = {
        "format": sound.format,
        "encoding": sound.subtype,
        "sample_rate": sound.samplerate,
        "channels": sound.channels,
        "frames": decoded,
        "duration_seconds": decoded / sound.samplerate,
    }
    notes = []
    if repaired:
        notes.append("RIFF and data sizes were 0 (written while streaming): read to the end")
    if non_finite:
        # Kept as stored; the audio features treat them as silence.
        metadata["non_finite_samples"] = non_finite
        notes.append(f"{non_finite} non-finite (NaN or infinite) samples")
    if notes:
        metadata["note"] = "; ".join(notes)
    subtype = _SUBTYPES.get(sound.format, sound.format.lower())
    return Extraction("audio", subtype, metadata, (), ())


def _check_sound_data(stream: BinaryIO, file_size: int, order: str, chunk: bytes) -> None:
    """Fail when the sound-data ``chunk`` declares more bytes than the file holds."""
    offset = 12
    while offset + 8 <= file_size:
        stream.seek(offset)
        chunk_id, size = struct.unpack(f"{order}4sI", stream.read(8))
        if chunk_id == chunk:
            available = file_size - offset - 8
            if size not in _UNKNOWN_SIZES and size > available:
                raise ExtractionError(
                    f"truncated audio: {chunk.decode()} chunk declares {size} bytes,"
                    f" only {available} present"
                )
            return
        # Chunks are padded to an even length.
        offset += 8 + size + (size & 1)
