"""Reference counts (holdings + component rows + relation rows) stay exact as holdings come and
go, and `collect_garbage` removes exactly what nothing references, also while files are being
ingested in other threads."""

from __future__ import annotations

import hashlib
import shutil
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from tests.integration.data_plane.data_plane_support import (
    ONNX_ARRAYS,
    add_tenant,
    assert_store_consistent,
    atom_ids,
    by_name,
    export,
    ingest,
    random_bytes,
    reference_count_mismatches,
    reference_counts,
    write_onnx,
    write_pdf,
    write_safetensors,
)

from hartonomous.atoms.holdings import HoldingNotFoundError, collect_garbage, release_holding
from hartonomous.atoms.read import require_visible
from hartonomous.db.tables import atom_payloads, atoms, holdings, model_tensors, models
from hartonomous.ingest.pipeline import JobOutcome

REPEATED = "This paragraph comes twice in the same file.\n\n"
MIDDLE = "Something different sits between the two.\n\n"
CLOSING = "And the file ends here.\n"


def _reachable(engine: Engine) -> set[bytes]:
    """Every atom a holding reaches through components and relations."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                """
                WITH RECURSIVE down(atom_id) AS (
                    SELECT atom_id FROM holdings
                    UNION
                    SELECT edges.child FROM (
                        SELECT parent_atom_id AS parent, child_atom_id AS child
                        FROM atom_components
                        UNION ALL
                        SELECT from_atom_id, to_atom_id FROM atom_relations
                    ) AS edges JOIN down ON edges.parent = down.atom_id
                )
                SELECT atom_id FROM down
                """
            )
        )
        return {bytes(atom_id) for (atom_id,) in rows}


def _holding_ids(engine: Engine, tenant_id: str, atom_id_hex: str) -> list[uuid.UUID]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(holdings.c.holding_id).where(
                    holdings.c.tenant_id == tenant_id,
                    holdings.c.atom_id == bytes.fromhex(atom_id_hex),
                )
            ).scalars()
        )


def _count(engine: Engine, content: bytes) -> int:
    counts = reference_counts(engine)
    return counts[hashlib.sha256(content).digest()]


def _leaf_bytes(engine: Engine, atom_set: set[bytes]) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(text("coalesce(sum(size_bytes), 0)"))
                .select_from(atoms)
                .where(atoms.c.kind == "leaf", atoms.c.atom_id.in_(list(atom_set)))
            ).scalar_one()
        )


def test_counts_follow_holdings_and_gc_collects_exactly_the_unreferenced(
    engine: Engine, tmp_path: Path
) -> None:
    document = (REPEATED + MIDDLE + REPEATED + CLOSING).encode()
    (tmp_path / "doc.txt").write_bytes(document)
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "doc.txt", tmp_path / "copy" / "doc.txt")
    (tmp_path / "blob.bin").write_bytes(random_bytes(300_000))
    write_pdf(tmp_path / "report.pdf", ["Text extracted from a page"])
    acme, globex = add_tenant(engine, "acme"), add_tenant(engine, "globex")

    first = by_name(
        ingest(engine, acme, tmp_path / "doc.txt", tmp_path / "blob.bin", tmp_path / "report.pdf")
    )

    doc = first["doc.txt"].atom_id
    assert doc is not None
    assert _count(engine, document) == 1
    assert _count(engine, REPEATED.encode()) == 2  # two runs of the same child in one file
    assert _count(engine, MIDDLE.encode()) == 1
    assert _count(engine, b"Text extracted from a page") == 1  # one relation row
    assert reference_count_mismatches(engine) == []

    # A second holding of the same file: another tenant, and the same tenant at another path.
    ingest(engine, globex, tmp_path / "doc.txt")
    ingest(engine, acme, tmp_path / "copy" / "doc.txt")
    assert _count(engine, document) == 3
    assert _count(engine, REPEATED.encode()) == 2  # children count parents, not holders
    assert reference_count_mismatches(engine) == []

    (globex_holding,) = _holding_ids(engine, globex, doc)
    release_holding(engine, globex, globex_holding)
    assert _count(engine, document) == 2
    with pytest.raises(HoldingNotFoundError):
        release_holding(engine, globex, globex_holding)
    acme_holdings = _holding_ids(engine, acme, doc)
    assert len(acme_holdings) == 2
    for holding_id in acme_holdings:
        release_holding(engine, acme, holding_id)
    assert _count(engine, document) == 0
    assert _count(engine, REPEATED.encode()) == 2  # its parent still exists until gc
    assert reference_count_mismatches(engine) == []

    before = atom_ids(engine)
    garbage = before - _reachable(engine)
    parts = (document, REPEATED.encode(), MIDDLE.encode(), CLOSING.encode())
    assert garbage == {hashlib.sha256(part).digest() for part in parts}
    freed = _leaf_bytes(engine, garbage)

    report = collect_garbage(engine, batch_size=1)

    assert atom_ids(engine) == before - garbage
    assert report.atoms_deleted == len(garbage)
    assert report.bytes_freed == freed == len(REPEATED + MIDDLE + CLOSING)
    assert report.batches >= 2  # the file first, its paragraphs once their count reached zero
    with engine.connect() as connection:
        orphan_payloads = connection.execute(
            select(atom_payloads.c.atom_id).where(atom_payloads.c.atom_id.in_(list(garbage)))
        ).all()
    assert orphan_payloads == []
    assert collect_garbage(engine).atoms_deleted == 0
    for name in ("blob.bin", "report.pdf"):
        atom_id = first[name].atom_id
        assert atom_id is not None
        assert export(engine, atom_id) == (tmp_path / name).read_bytes()
    assert_store_consistent(engine)


def test_shared_atoms_survive_gc_while_anything_references_them(
    engine: Engine, tmp_path: Path
) -> None:
    shared = "A paragraph both documents contain.\n\n"
    (tmp_path / "one.txt").write_text("Opening of one.\n\n" + shared + "End.\n", encoding="utf-8")
    (tmp_path / "two.txt").write_text("Opening of two.\n\n" + shared + "End.\n", encoding="utf-8")
    base = random_bytes(600_000)
    (tmp_path / "v1.bin").write_bytes(base)
    (tmp_path / "v2.bin").write_bytes(base[:500] + b"edit" + base[500:])
    tenant = add_tenant(engine, "acme")
    files = by_name(ingest(engine, tenant, tmp_path))
    assert _count(engine, shared.encode()) == 2

    for name in ("one.txt", "v1.bin"):
        atom_id = files[name].atom_id
        assert atom_id is not None
        (holding_id,) = _holding_ids(engine, tenant, atom_id)
        release_holding(engine, tenant, holding_id)
    garbage = atom_ids(engine) - _reachable(engine)
    report = collect_garbage(engine, batch_size=2)

    assert report.atoms_deleted == len(garbage) > 0
    assert _count(engine, shared.encode()) == 1
    assert _count(engine, b"End.\n") == 1
    for name in ("two.txt", "v2.bin"):
        atom_id = files[name].atom_id
        assert atom_id is not None
        assert export(engine, atom_id) == (tmp_path / name).read_bytes()
    assert_store_consistent(engine)


def test_releasing_a_model_collects_its_tensors_and_rows(engine: Engine, tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "tiny.safetensors")
    tenant = add_tenant(engine, "acme")
    (file,) = ingest(engine, tenant, path).files
    assert file.atom_id is not None
    (holding_id,) = _holding_ids(engine, tenant, file.atom_id)

    release_holding(engine, tenant, holding_id)
    report = collect_garbage(engine)

    assert report.bytes_freed == path.stat().st_size
    assert atom_ids(engine) == set()
    with engine.connect() as connection:
        assert connection.execute(select(models.c.atom_id)).all() == []
        assert connection.execute(select(model_tensors.c.name)).all() == []


def test_model_first_stored_as_plain_bytes_keeps_its_tensor_atoms(
    engine: Engine, tmp_path: Path
) -> None:
    # ONNX has no magic number: the same bytes under another name are an opaque file, and the
    # file's atom already exists (cut into other spans) when they later arrive as a model.
    model = write_onnx(tmp_path / "tiny.onnx")
    opaque = tmp_path / "tiny.onnx.bak"
    shutil.copy(model, opaque)
    tenant = add_tenant(engine, "acme")
    ingest(engine, tenant, opaque)
    (file,) = ingest(engine, tenant, model).files
    assert file.atom_id is not None
    assert reference_count_mismatches(engine) == []

    collect_garbage(engine)

    with engine.connect() as connection:
        tensors = connection.execute(
            select(model_tensors.c.name, model_tensors.c.tensor_atom_id).where(
                model_tensors.c.model_atom_id == bytes.fromhex(file.atom_id)
            )
        ).all()
        visible_tensor = bytes(tensors[0].tensor_atom_id)
        require_visible(connection, tenant, visible_tensor)
    assert {tensor.name for tensor in tensors} == set(ONNX_ARRAYS)
    for tensor in tensors:
        assert tensor.tensor_atom_id is not None
        stored = export(engine, bytes(tensor.tensor_atom_id).hex())
        assert stored == ONNX_ARRAYS[tensor.name].tobytes()
    assert export(engine, file.atom_id) == model.read_bytes()
    assert_store_consistent(engine)


def test_gc_alongside_ingestion_never_breaks_it(engine: Engine, tmp_path: Path) -> None:
    shared = "Every round ingests this paragraph again.\n\n"
    folder = tmp_path / "corpus"
    folder.mkdir()
    for index in range(4):
        (folder / f"doc{index}.txt").write_text(
            f"Document {index} opens.\n\n" + shared + f"Document {index} closes.\n",
            encoding="utf-8",
        )
    base = random_bytes(500_000)
    for index in range(3):
        edited = base[: 1000 * index] + b"x" + base[1000 * index :]
        (folder / f"blob{index}.bin").write_bytes(edited)
    write_safetensors(folder / "tiny.safetensors")
    tenants = [add_tenant(engine, "acme"), add_tenant(engine, "globex")]
    rounds = 5
    outcomes: dict[str, list[JobOutcome]] = {tenant: [] for tenant in tenants}
    gc_errors: list[Exception] = []
    collected = 0
    running = threading.Barrier(len(tenants) + 1)
    done = threading.Event()

    def ingest_and_release(tenant: str) -> None:
        running.wait()
        for round_number in range(rounds):
            outcome = ingest(engine, tenant, folder)
            outcomes[tenant].append(outcome)
            if round_number == rounds - 1:
                return  # the last round's holdings stay
            for file in outcome.files:
                if file.atom_id is not None:
                    for holding_id in _holding_ids(engine, tenant, file.atom_id):
                        release_holding(engine, tenant, holding_id)

    def collect() -> None:
        nonlocal collected
        running.wait()
        while not done.is_set():
            try:
                collected += collect_garbage(engine, batch_size=3).atoms_deleted
            except Exception as exc:  # noqa: BLE001 - the test asserts there were none
                gc_errors.append(exc)
                return

    ingesters = [threading.Thread(target=ingest_and_release, args=(t,)) for t in tenants]
    collector = threading.Thread(target=collect)
    for thread in [*ingesters, collector]:
        thread.start()
    for thread in ingesters:
        thread.join()
    done.set()
    collector.join()

    assert gc_errors == []
    assert collected > 0  # gc did collect between the rounds
    for tenant in tenants:
        assert len(outcomes[tenant]) == rounds
        for outcome in outcomes[tenant]:
            assert outcome.status == "completed"
            assert {(file.status, file.error) for file in outcome.files} == {("ingested", None)}
    collect_garbage(engine)
    for tenant in tenants:
        for file in outcomes[tenant][-1].files:
            assert file.atom_id is not None
            assert export(engine, file.atom_id) == Path(file.path).read_bytes()
    assert atom_ids(engine) == _reachable(engine)
    assert_store_consistent(engine)
