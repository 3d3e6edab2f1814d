"""Tenancy: a tenant sees an atom only while it holds it or something that contains it."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from tests.integration.data_plane.data_plane_support import (
    SAFETENSORS_ARRAYS,
    add_tenant,
    by_name,
    ingest,
    write_pdf,
    write_safetensors,
)

from hartonomous.atoms.holdings import release_holding
from hartonomous.atoms.read import AtomNotFoundError, require_visible, summarise
from hartonomous.db.tables import holdings

SHARED = "A paragraph that both tenants' documents contain.\n\n"


def _visible(engine: Engine, tenant: str, atom_id: bytes) -> bool:
    with engine.connect() as connection:
        try:
            require_visible(connection, tenant, atom_id)
        except AtomNotFoundError:
            return False
        return True


def _digest(content: str | bytes) -> bytes:
    return hashlib.sha256(content.encode() if isinstance(content, str) else content).digest()


def test_tenant_sees_only_what_it_holds(engine: Engine, tmp_path: Path) -> None:
    private = "Only acme's document has this paragraph.\n"
    (tmp_path / "acme.txt").write_text(SHARED + private, encoding="utf-8")
    (tmp_path / "globex.txt").write_text(SHARED + "Globex ends its own way.\n", encoding="utf-8")
    write_pdf(tmp_path / "acme.pdf", ["Words only acme's PDF contains"])
    acme, globex = add_tenant(engine, "acme"), add_tenant(engine, "globex")
    files = by_name(ingest(engine, acme, tmp_path / "acme.txt", tmp_path / "acme.pdf"))
    document = _digest((tmp_path / "acme.txt").read_bytes())
    pdf_text = _digest("Words only acme's PDF contains")

    # acme holds the document, so it sees it, its paragraphs and the PDF's extracted text.
    for atom_id in (document, _digest(SHARED), _digest(private), pdf_text):
        assert _visible(engine, acme, atom_id)
    # globex holds nothing yet: every one of those atoms is "not found" for it.
    for atom_id in (document, _digest(SHARED), _digest(private), pdf_text):
        assert not _visible(engine, globex, atom_id)
    with engine.connect() as connection, pytest.raises(AtomNotFoundError, match="globex"):
        summarise(connection, globex, document)
    # An atom that does not exist at all looks the same as one the tenant does not hold.
    assert not _visible(engine, acme, _digest("never stored"))

    globex_file = by_name(ingest(engine, globex, tmp_path / "globex.txt"))["globex.txt"]

    assert _visible(engine, globex, _digest(SHARED))  # a descendant of what globex now holds
    assert not _visible(engine, globex, document)
    assert not _visible(engine, globex, _digest(private))
    assert not _visible(engine, globex, pdf_text)
    with engine.connect() as connection:
        summary = summarise(connection, globex, _digest(SHARED))
    # The summary names globex's own holding only, never acme's.
    assert [holder["source_uri"] for holder in summary.holders] == [
        (tmp_path / "globex.txt").resolve().as_uri()
    ]
    assert summary.reference_count == 2

    # Releasing its holding takes the visibility away again.
    assert globex_file.atom_id is not None
    with engine.connect() as connection:
        holding_id: uuid.UUID = connection.execute(
            select(holdings.c.holding_id).where(holdings.c.tenant_id == globex)
        ).scalar_one()
    release_holding(engine, globex, holding_id)
    assert not _visible(engine, globex, _digest(SHARED))
    assert _visible(engine, acme, _digest(SHARED))
    assert files["acme.pdf"].atom_id is not None
    assert _visible(engine, acme, bytes.fromhex(files["acme.pdf"].atom_id))


def test_holding_a_model_makes_its_tensors_visible(engine: Engine, tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "tiny.safetensors")
    acme, globex = add_tenant(engine, "acme"), add_tenant(engine, "globex")
    ingest(engine, acme, path)
    tensor = _digest(SAFETENSORS_ARRAYS["encoder.weight"].tobytes())

    assert _visible(engine, acme, tensor)
    assert not _visible(engine, globex, tensor)
