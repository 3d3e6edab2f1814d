"""Atoms: content-addressed leaf chunks and composite ComponentStreams (the pure core)."""

from hartonomous.atoms.chunking import Chunk, chunk_bytes, chunk_stream
from hartonomous.atoms.component_stream import (
    ComponentStreamError,
    Run,
    decode_component_stream,
    encode_component_stream,
    merge_runs,
    runs_from_children,
)
from hartonomous.atoms.hashing import digest_to_hex, hex_to_digest, sha256_digest

__all__ = [
    "Chunk",
    "ComponentStreamError",
    "Run",
    "chunk_bytes",
    "chunk_stream",
    "decode_component_stream",
    "digest_to_hex",
    "encode_component_stream",
    "hex_to_digest",
    "merge_runs",
    "runs_from_children",
    "sha256_digest",
]
