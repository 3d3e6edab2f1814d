"""Recognise model files and hand them to the reader for their format.

Content decides first, the file name second:

* GGUF starts with the magic ``GGUF``.
* safetensors starts with an 8-byte header length followed by a JSON object (``{`` then ``"`` or
  ``}`` after optional whitespace). The claimed length is deliberately not checked here, so a file
  with a corrupt length is still recognised and then fails in the reader with a reason.
* ONNX is a bare protobuf with no magic, so only the ``.onnx`` extension identifies it.

A file whose content matches nothing but whose extension names a model format is reported as that
format, so that a truncated or empty model fails with a reason instead of being stored as an
anonymous blob.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable
from pathlib import Path

from hartonomous.ingest.models.types import ModelDescription, ModelFormatError

GGUF_MAGIC = b"GGUF"
_EXTENSIONS = {".safetensors": "safetensors", ".gguf": "gguf", ".onnx": "onnx"}
# Readers import their format's library (gguf, onnx) on first use, not when sniffing.
_READERS = {
    "safetensors": ("safetensors_reader", "read_safetensors"),
    "gguf": ("gguf_reader", "read_gguf"),
    "onnx": ("onnx_reader", "read_onnx"),
}
# How far past the opening brace to look for the first key's quote (headers may be padded).
_JSON_WINDOW = 64


def sniff_model_format(path: Path) -> str | None:
    """Return "safetensors", "gguf" or "onnx" for a model file, else None."""
    with path.open("rb") as handle:
        head = handle.read(9 + _JSON_WINDOW)
    if head.startswith(GGUF_MAGIC):
        return "gguf"
    if _looks_like_safetensors(head):
        return "safetensors"
    return _EXTENSIONS.get(path.suffix.lower())


def read_model(path: Path) -> ModelDescription:
    """Describe the model file at ``path``; raises ModelFormatError if it is not a sound one."""
    model_format = sniff_model_format(path)
    if model_format is None:
        raise ModelFormatError("not a safetensors, GGUF or ONNX model file")
    module, function = _READERS[model_format]
    reader: Callable[[Path], ModelDescription] = getattr(
        importlib.import_module(f"hartonomous.ingest.models.{module}"), function
    )
    return reader(path)


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 10 or head[8:9] != b"{":
        return False
    (header_length,) = struct.unpack("<Q", head[:8])
    after_brace = head[9:].lstrip(b" \t\r\n")
    # The shortest header is "{}"; a JSON object continues with a key or closes.
    return header_length >= 2 and after_brace[:1] in (b'"', b"}")
