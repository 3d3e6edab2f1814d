"""Choose an extractor family from the file's leading bytes first and its extension second.

Magic bytes win because extensions lie (a ``.txt`` that is really a PNG is an image). The
extension only decides when no signature matches, so a damaged file whose signature was
destroyed still reaches the extractor that can say what is wrong with it (a ``.png`` that is not
a PNG fails as a corrupt image instead of being stored silently as opaque bytes).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Family = Literal["text", "pdf", "docx", "image", "audio", "video", "binary"]

# How many leading bytes sniffing needs: MPEG-TS needs three 188-byte packets, an Ogg page names
# its codec within the first few hundred bytes.
HEAD_BYTES = 1024

_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"})
_MP3_FRAME_SYNCS = (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_TS_PACKET = 188
_EBML = b"\x1a\x45\xdf\xa3"

_ISO_BRANDS = {b"qt ": "mov", b"M4A": "m4a", b"M4B": "m4a", b"M4V": "m4v", b"3gp": "3gp"}

_BY_SUFFIX: dict[str, tuple[Family, str]] = {
    ".pdf": ("pdf", "pdf"),
    ".docx": ("docx", "docx"),
    ".png": ("image", "png"),
    ".jpg": ("image", "jpeg"),
    ".jpeg": ("image", "jpeg"),
    ".gif": ("image", "gif"),
    ".webp": ("image", "webp"),
    ".tif": ("image", "tiff"),
    ".tiff": ("image", "tiff"),
    ".bmp": ("image", "bmp"),
    ".wav": ("audio", "wav"),
    ".flac": ("audio", "flac"),
    ".ogg": ("audio", "ogg"),
    ".oga": ("audio", "ogg"),
    ".opus": ("audio", "ogg"),
    ".aif": ("audio", "aiff"),
    ".aiff": ("audio", "aiff"),
    ".mp3": ("audio", "mp3"),
    ".mp4": ("video", "mp4"),
    ".m4v": ("video", "m4v"),
    ".m4a": ("video", "m4a"),
    ".mov": ("video", "mov"),
    ".mkv": ("video", "matroska"),
    ".webm": ("video", "webm"),
    ".avi": ("video", "avi"),
    ".wmv": ("video", "asf"),
    ".flv": ("video", "flv"),
    ".mpg": ("video", "mpeg"),
    ".mpeg": ("video", "mpeg"),
}


@dataclass(frozen=True)
class Sniffed:
    """The extractor family for a file and the subtype the signature or extension implies.

    Family ``"text"`` means "no signature matched": the text extractor decodes the bytes and
    falls back to ``binary`` when they are not text, so its subtype is decided there.
    """

    family: Family
    subtype: str


def sniff(path: Path, head: bytes) -> Sniffed:
    """Classify a file from its first ``HEAD_BYTES`` bytes, then from its extension."""
    by_magic = _by_magic(path, head)
    if by_magic is not None:
        return by_magic
    by_suffix = _BY_SUFFIX.get(path.suffix.lower())
    if by_suffix is not None:
        return Sniffed(*by_suffix)
    return Sniffed("text", "")


def _by_magic(path: Path, head: bytes) -> Sniffed | None:
    for matches, found in _SIGNATURES:
        if matches(head):
            return found
    if head[4:8] == b"ftyp":
        return _iso_media(head[8:12])
    if head.startswith(b"PK\x03\x04"):
        return Sniffed("docx", "docx") if _is_docx(path) else Sniffed("binary", "zip")
    return None


def _is_bmp(head: bytes) -> bool:
    # "BM" alone starts plenty of text files; the DIB header size makes it a real bitmap.
    return head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES


def _is_aiff(head: bytes) -> bool:
    return head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC")


def _is_mpeg_ts(head: bytes) -> bool:
    return len(head) > 2 * _TS_PACKET and all(head[i] == 0x47 for i in (0, 188, 376))


def _riff(form: bytes) -> Callable[[bytes], bool]:
    return lambda head: head.startswith((b"RIFF", b"RF64")) and head[8:12] == form


def _prefix(*signatures: bytes) -> Callable[[bytes], bool]:
    return lambda head: head.startswith(signatures)


_SIGNATURES: tuple[tuple[Callable[[bytes], bool], Sniffed], ...] = (
    (_prefix(b"\x89PNG\r\n\x1a\n"), Sniffed("image", "png")),
    (_prefix(b"\xff\xd8\xff"), Sniffed("image", "jpeg")),
    (_prefix(b"GIF87a", b"GIF89a"), Sniffed("image", "gif")),
    (_riff(b"WEBP"), Sniffed("image", "webp")),
    (_prefix(b"II*\x00", b"MM\x00*"), Sniffed("image", "tiff")),
    (_is_bmp, Sniffed("image", "bmp")),
    (_riff(b"WAVE"), Sniffed("audio", "wav")),
    (_prefix(b"fLaC"), Sniffed("audio", "flac")),
    # Ogg also carries Theora video; its first packet names the codec.
    (lambda head: head.startswith(b"OggS") and b"\x80theora" in head, Sniffed("video", "ogg")),
    (_prefix(b"OggS"), Sniffed("audio", "ogg")),
    (_is_aiff, Sniffed("audio", "aiff")),
    (_prefix(b"ID3", *_MP3_FRAME_SYNCS), Sniffed("audio", "mp3")),
    # Matroska and WebM share the EBML header; WebM names itself in the DocType.
    (lambda head: head.startswith(_EBML) and b"webm" in head, Sniffed("video", "webm")),
    (_prefix(_EBML), Sniffed("video", "matroska")),
    (_riff(b"AVI "), Sniffed("video", "avi")),
    (_prefix(b"FLV\x01"), Sniffed("video", "flv")),
    (_prefix(_ASF_GUID), Sniffed("video", "asf")),
    (_prefix(b"\x00\x00\x01\xba"), Sniffed("video", "mpeg")),
    (_is_mpeg_ts, Sniffed("video", "mpegts")),
    (_prefix(b"%PDF-"), Sniffed("pdf", "pdf")),
    # Recognised containers that no extractor opens: kept opaque but named.
    (_prefix(b"\x1f\x8b"), Sniffed("binary", "gzip")),
    (_prefix(b"BZh"), Sniffed("binary", "bzip2")),
    (_prefix(b"\xfd7zXZ\x00"), Sniffed("binary", "xz")),
    (_prefix(b"\x28\xb5\x2f\xfd"), Sniffed("binary", "zstd")),
    (_prefix(b"7z\xbc\xaf\x27\x1c"), Sniffed("binary", "7z")),
    (_prefix(b"\x7fELF"), Sniffed("binary", "elf")),
    (_prefix(b"\x00asm"), Sniffed("binary", "wasm")),
)


def _iso_media(brand: bytes) -> Sniffed:
    """ISO base media files (MP4 and relatives), told apart by their major brand."""
    if brand in _HEIF_BRANDS:
        # HEIF/AVIF stills need Pillow plugins that are not a dependency.
        return Sniffed("binary", "heif")
    return Sniffed("video", _ISO_BRANDS.get(brand[:3], "mp4"))


def _is_docx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        # A damaged archive: only its extension can still say it meant to be a document.
        return path.suffix.lower() == ".docx"
