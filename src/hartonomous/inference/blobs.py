"""An inference's inputs and outputs as atoms held by its tenant (docs/inference.md).

Caller-supplied texts and tensor files, and the files a task produces, are stored like
ingested content (`ingest.layout.write_bytes`: content-defined chunks, deduplicated, the atom
id the SHA-256 of the bytes) and held by the tenant with the source URI
``inference:<inference id>/<input|output>/<name>`` and source type ``inference``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, text

from hartonomous.atoms.store import AtomWriter, json_text
from hartonomous.ingest.layout import write_bytes
from hartonomous.storable import storable_text

__all__ = [
    "HOLD_CONFLICT",
    "NPY_MEDIA_TYPE",
    "TEXT_MEDIA_TYPE",
    "HeldBlob",
    "hold_blob",
    "holding_row",
    "source_uri",
    "store_blob",
]

NPY_MEDIA_TYPE = "application/x-npy"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"
SOURCE_TYPE = "inference"
# (modality, subtype) an atom gets by its media type; anything else is opaque binary.
_LABELS = {NPY_MEDIA_TYPE: ("binary", "npy"), TEXT_MEDIA_TYPE: ("text", "plain")}

# Holding the same bytes under the same name twice (a retried completion) is one holding.
HOLD_CONFLICT = (
    "ON CONFLICT (tenant_id, source_uri, atom_id) DO UPDATE SET metadata = holdings.metadata"
)
_HOLD = text(
    "INSERT INTO holdings (tenant_id, atom_id, source_uri, source_type, visibility, metadata) "
    "VALUES (:tenant_id, :atom_id, :source_uri, :source_type, :visibility, "
    f"CAST(:metadata AS jsonb)) {HOLD_CONFLICT} RETURNING holding_id"
)


@dataclass(frozen=True)
class HeldBlob:
    atom_id: bytes
    holding_id: uuid.UUID
    size_bytes: int


def source_uri(inference_id: uuid.UUID, role: Literal["input", "output"], name: str) -> str:
    """``inference:<id>/<role>/<name>``: where an inference's input or output came from."""
    return f"inference:{inference_id}/{role}/{storable_text(name)}"


def store_blob(connection: Connection, data: bytes, media_type: str) -> bytes:
    """Store ``data`` as an atom (labelled by ``media_type``) in the caller's transaction; its
    atom id (the SHA-256 of ``data``)."""
    modality, subtype = _LABELS.get(media_type, ("binary", ""))
    return write_bytes(AtomWriter(connection), data, modality, subtype, {}).atom_id


def holding_row(
    tenant_id: str,
    inference_id: uuid.UUID,
    *,
    role: Literal["input", "output"],
    name: str,
    atom_id: bytes,
    data: bytes,
    media_type: str,
) -> dict[str, object]:
    """The `holdings` row that holds a stored input or output for its tenant (``metadata`` a
    JSON object)."""
    return {
        "tenant_id": tenant_id,
        "atom_id": atom_id,
        "source_uri": source_uri(inference_id, role, name),
        "source_type": SOURCE_TYPE,
        "visibility": "private",
        "metadata": {
            "inference_id": str(inference_id),
            "name": storable_text(name),
            "media_type": media_type,
            "size_bytes": len(data),
        },
    }


def hold_blob(
    connection: Connection,
    tenant_id: str,
    inference_id: uuid.UUID,
    *,
    role: Literal["input", "output"],
    name: str,
    data: bytes,
    media_type: str,
) -> HeldBlob:
    """Store ``data`` as an atom and hold it for ``tenant_id`` in the caller's transaction."""
    atom_id = store_blob(connection, data, media_type)
    row = holding_row(
        tenant_id,
        inference_id,
        role=role,
        name=name,
        atom_id=atom_id,
        data=data,
        media_type=media_type,
    )
    metadata = row["metadata"]
    assert isinstance(metadata, dict)
    holding_id = connection.execute(_HOLD, {**row, "metadata": json_text(metadata)}).scalar_one()
    return HeldBlob(atom_id, holding_id, len(data))
