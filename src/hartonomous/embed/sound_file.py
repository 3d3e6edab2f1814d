"""Opening sound with libsndfile, including WAV files written while streaming.

A writer that cannot seek back (a recorder piping to a file, a crashed capture) leaves the RIFF
and ``data`` chunk sizes at 0. libsndfile takes the 0 literally and reports no frames, although
the samples are all there. For such a file (a RIFF/WAVE whose ``data`` size is 0 and which holds
bytes after the chunk header), the two sizes are replaced, as the bytes are read, by what the
file really holds; nothing is written back. Sizes of ``0xFFFFFFFF`` (the other streaming
convention) libsndfile already reads to the end of the file.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

import soundfile

# Chunks before ``data`` (fmt, fact, LIST, …) rarely exceed a few KiB.
_HEADER_BYTES = 64 * 1024


def open_sound(stream: BinaryIO, size: int) -> tuple[soundfile.SoundFile, bool]:
    """A libsndfile reader over ``stream`` (``size`` bytes long) and whether sizes were repaired.

    Raises what ``soundfile.SoundFile`` raises for undecodable input (``LibsndfileError``,
    ``RuntimeError``, ``TypeError``, ``ValueError``).
    """
    stream.seek(0)
    head = stream.read(_HEADER_BYTES)
    stream.seek(0)
    data_size_at = _zero_data_size_offset(head, size)
    if data_size_at is None:
        return soundfile.SoundFile(stream), False
    patches = {
        4: struct.pack("<I", min(size - 8, 0xFFFFFFFF)),
        data_size_at: struct.pack("<I", min(size - data_size_at - 4, 0xFFFFFFFF)),
    }
    return soundfile.SoundFile(_Patched(stream, patches)), True


def _zero_data_size_offset(head: bytes, size: int) -> int | None:
    """Offset of the ``data`` chunk's size field when it is 0 and bytes follow, else ``None``."""
    if not (head.startswith(b"RIFF") and head[8:12] == b"WAVE"):
        return None
    offset = 12
    while offset + 8 <= len(head):
        chunk_id, chunk_size = struct.unpack_from("<4sI", head, offset)
        if chunk_id == b"data":
            return offset + 4 if chunk_size == 0 and size > offset + 8 else None
        # Chunks are padded to an even length.
        offset += 8 + chunk_size + (chunk_size & 1)
    return None


class _Patched(io.RawIOBase):
    """Reads ``raw`` with a few byte ranges replaced (offset -> replacement bytes)."""

    def __init__(self, raw: BinaryIO, patches: dict[int, bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._patches = patches

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        start = self._raw.tell()
        data = self._raw.read(len(buffer))
        view = bytearray(data)
        for at, replacement in self._patches.items():
            for index, byte in enumerate(replacement):
                if start <= at + index < start + len(view):
                    view[at + index - start] = byte
        buffer[: len(view)] = view
        return len(view)
