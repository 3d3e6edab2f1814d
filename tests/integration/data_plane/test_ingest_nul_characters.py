"""NUL characters, which PostgreSQL text and jsonb cannot hold, in metadata and extracted text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sqlalchemy import Engine, select
from tests.integration.data_plane.data_plane_support import (
    add_tenant,
    by_name,
    export,
    ingest,
)

from hartonomous.atoms.store import AtomWriter, LeafAtom
from hartonomous.db.tables import atom_payloads, atoms, models


def test_safetensors_metadata_with_nul_is_ingested_exactly(engine: Engine, tmp_path: Path) -> None:
    add_tenant(engine, "acme")
    path = tmp_path / "nul.safetensors"
    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(path), metadata={"note": "a\x00b"})
    outcome = by_name(ingest(engine, "acme", path))["nul.safetensors"]
    assert outcome.status == "ingested", outcome.error
    assert export(engine, outcome.atom_id or "") == path.read_bytes()
    with engine.connect() as connection:
        stored = connection.execute(select(models.c.metadata)).scalar_one()
    assert "a\ufffdb" in str(stored)


def test_text_with_nul_is_stored_with_a_replacement_character(engine: Engine) -> None:
    data = b"before\x00after"
    leaf = LeafAtom(hashlib.sha256(data).digest(), data, "text", "plain", "before\x00after")
    with engine.begin() as connection:
        AtomWriter(connection).put_leaves([leaf])
    with engine.connect() as connection:
        text = connection.execute(
            select(atoms.c.canonical_text).where(atoms.c.atom_id == leaf.atom_id)
        ).scalar_one()
        payload = connection.execute(
            select(atom_payloads.c.content).where(atom_payloads.c.atom_id == leaf.atom_id)
        ).scalar_one()
    assert text == "before\ufffdafter"
    assert bytes(payload) == data
