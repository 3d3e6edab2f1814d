"""Ingestion jobs: every file is its own unit of work, in its own transaction.

A file that fails leaves no holding and no atom behind (its transaction rolls back) and does not
stop the others; the job records it as failed with the reason. Concurrent ingestion of the same
new bytes, or an atom collected by `atoms gc` at the wrong moment, retries that file.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg.errors
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from hartonomous.atoms.store import AtomVanishedError, AtomWriter
from hartonomous.db.tables import (
    atom_components,
    atom_relations,
    holdings,
    ingestion_job_atoms,
    ingestion_jobs,
    model_tensors,
    models,
    tenants,
)
from hartonomous.ingest.extractors import Extraction, ExtractionError, extract
from hartonomous.ingest.indexing import HoldingIndexer
from hartonomous.ingest.layout import (
    FileAtoms,
    tiles_file,
    write_binary_file,
    write_derived,
    write_text_file,
)
from hartonomous.ingest.models import (
    ModelDescription,
    ModelFormatError,
    read_model,
    sniff_model_format,
)
from hartonomous.ingest.paths import Candidate, expand_paths
from hartonomous.json_types import JsonValue, without_nul

_ATTEMPTS = 3
_ARCHITECTURE_LENGTH = 128  # models.architecture
_RETRYABLE = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)


class UnknownTenantError(Exception):
    pass


@dataclass(frozen=True)
class FileOutcome:
    path: str
    atom_id: str | None
    status: str  # ingested | unchanged | failed
    error: str | None
    new_bytes: int
    reused_bytes: int
    embedded: int = 0
    # Near-duplicates (policy with a threshold): {atom_id, similar_to, similarity}.
    similar: list[dict[str, object]] = field(default_factory=list)
    # Texts made only of characters the text model does not know (emoji…): not embedded.
    unknown_only: int = 0


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    status: str
    new_bytes: int
    reused_bytes: int
    files: list[FileOutcome]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class IngestRequest:
    tenant_id: str
    principal_id: str | None = None
    visibility: str = "private"
    source_type: str = "file"
    dedup_policy: str = "default"


def ingest_paths(
    engine: Engine,
    request: IngestRequest,
    paths: Sequence[Path],
    on_file: Callable[[FileOutcome], None] | None = None,
    *,
    indexer: HoldingIndexer | None = None,
    on_start: Callable[[int], None] | None = None,
) -> JobOutcome:
    """Ingest files and folders as one job; `on_start` hears how many files were found."""
    candidates = expand_paths(paths)
    if on_start is not None:
        on_start(len(candidates))
    indexer = indexer or HoldingIndexer.for_job(engine, request.tenant_id, request.dedup_policy)
    job_id = _start_job(engine, request)
    outcomes: list[FileOutcome] = []
    for ordinal, candidate in enumerate(candidates):
        outcome = _ingest_candidate(
            engine, _Slot(request, job_id, ordinal, candidate.path, indexer), candidate
        )
        outcomes.append(outcome)
        if on_file is not None:
            on_file(outcome)
    return _finish_job(engine, request.tenant_id, job_id, outcomes)


def _start_job(engine: Engine, request: IngestRequest) -> uuid.UUID:
    with engine.begin() as connection:
        known = connection.execute(
            select(tenants.c.tenant_id).where(tenants.c.tenant_id == request.tenant_id)
        ).scalar_one_or_none()
        if known is None:
            raise UnknownTenantError(f"unknown tenant {request.tenant_id!r}")
        job_id: uuid.UUID = connection.execute(
            insert(ingestion_jobs)
            .values(tenant_id=request.tenant_id, principal_id=request.principal_id)
            .returning(ingestion_jobs.c.job_id)
        ).scalar_one()
        return job_id


def _finish_job(
    engine: Engine, tenant_id: str, job_id: uuid.UUID, outcomes: list[FileOutcome]
) -> JobOutcome:
    failed = sum(1 for outcome in outcomes if outcome.status == "failed")
    if failed == 0:
        status = "completed"
    elif failed < len(outcomes):
        status = "completed_with_errors"
    else:
        status = "failed"
    new_bytes = sum(outcome.new_bytes for outcome in outcomes)
    reused_bytes = sum(outcome.reused_bytes for outcome in outcomes)
    with engine.begin() as connection:
        connection.execute(
            update(ingestion_jobs)
            .where(ingestion_jobs.c.tenant_id == tenant_id, ingestion_jobs.c.job_id == job_id)
            .values(
                status=status,
                file_count=len(outcomes),
                failed_count=failed,
                new_bytes=new_bytes,
                reused_bytes=reused_bytes,
                finished_at=func.now(),
            )
        )
    return JobOutcome(str(job_id), status, new_bytes, reused_bytes, outcomes)


@dataclass(frozen=True)
class _Analysis:
    extraction: Extraction | None
    model: ModelDescription | None


def _analyse(path: Path) -> _Analysis:
    if path.is_file() and sniff_model_format(path) is not None:
        return _Analysis(None, read_model(path))
    return _Analysis(extract(path), None)


@dataclass(frozen=True)
class _Slot:
    """One file's place in a job."""

    request: IngestRequest
    job_id: uuid.UUID
    ordinal: int
    path: Path
    indexer: HoldingIndexer


def _ingest_candidate(engine: Engine, slot: _Slot, candidate: Candidate) -> FileOutcome:
    if candidate.error is not None:
        return _record_failure(engine, slot, candidate.error)
    try:
        analysis = _analyse(candidate.path)
    except (ExtractionError, ModelFormatError) as exc:
        return _record_failure(engine, slot, str(exc))
    except OSError as exc:
        return _record_failure(engine, slot, exc.strerror or str(exc))
    stored = _store_with_retries(engine, slot, analysis)
    return stored if isinstance(stored, FileOutcome) else _record_failure(engine, slot, stored)


def _store_with_retries(engine: Engine, slot: _Slot, analysis: _Analysis) -> FileOutcome | str:
    """The stored file's outcome, or the reason it could not be stored."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with engine.begin() as connection:
                return _store_file(connection, slot, analysis)
        except AtomVanishedError:
            continue
        except (DBAPIError, psycopg.Error) as exc:
            # The atom writer talks to psycopg directly, so its errors arrive unwrapped.
            error = exc.orig if isinstance(exc, DBAPIError) else exc
            if isinstance(error, _RETRYABLE) and attempt < _ATTEMPTS:
                continue
            return str(error).splitlines()[0] if error is not None else str(exc)
        except OSError as exc:
            return exc.strerror or str(exc)
    return "atoms kept changing under us; try again"


def _store_file(connection: Connection, slot: _Slot, analysis: _Analysis) -> FileOutcome:
    writer = AtomWriter(connection)
    extraction = analysis.extraction
    path = slot.path
    size = path.stat().st_size
    if extraction is not None and tiles_file(extraction.segments, size):
        stored = write_text_file(writer, path.read_bytes(), extraction)
    else:
        stored = write_binary_file(writer, path, extraction, analysis.model)
    content_new_bytes = writer.new_bytes
    if extraction is not None:
        _relate(connection, stored, write_derived(writer, extraction))
    if analysis.model is not None:
        _store_model(connection, stored, analysis.model)
    holding_id, created = _hold(connection, slot, stored)
    # Vectors for the atoms this holding brings that have none yet, and its search entries.
    indexed = slot.indexer.index_holding(
        connection, slot.request.tenant_id, holding_id, slot.job_id
    )
    status = "ingested" if created else "unchanged"
    reused = max(0, size - content_new_bytes)
    connection.execute(
        insert(ingestion_job_atoms).values(
            tenant_id=slot.request.tenant_id,
            job_id=slot.job_id,
            ordinal=slot.ordinal,
            path=str(path),
            status=status,
            atom_id=stored.root.atom_id,
            holding_id=holding_id,
            new_bytes=writer.new_bytes,
            reused_bytes=reused,
        )
    )
    return FileOutcome(
        str(path),
        stored.root.atom_id.hex(),
        status,
        None,
        writer.new_bytes,
        reused,
        indexed.embedded,
        [asdict(link) for link in indexed.similar],
        indexed.unknown_only,
    )


def _hold(connection: Connection, slot: _Slot, stored: FileAtoms) -> tuple[uuid.UUID, bool]:
    request, path = slot.request, slot.path
    source_uri = path.resolve().as_uri()
    created = connection.execute(
        pg_insert(holdings)
        .values(
            tenant_id=request.tenant_id,
            atom_id=stored.root.atom_id,
            source_uri=source_uri,
            source_type=request.source_type,
            visibility=request.visibility,
            job_id=slot.job_id,
            metadata={"file_name": path.name, "size_bytes": stored.root.size_bytes},
        )
        .on_conflict_do_nothing(
            index_elements=[holdings.c.tenant_id, holdings.c.source_uri, holdings.c.atom_id]
        )
        .returning(holdings.c.holding_id)
    ).scalar_one_or_none()
    if created is not None:
        return created, True
    existing = connection.execute(
        select(holdings.c.holding_id).where(
            holdings.c.tenant_id == request.tenant_id,
            holdings.c.source_uri == source_uri,
            holdings.c.atom_id == stored.root.atom_id,
        )
    ).scalar_one()
    return existing, False


def _relate(
    connection: Connection,
    stored: FileAtoms,
    related: list[tuple[str, bytes, dict[str, JsonValue]]],
) -> None:
    if not related:
        return
    counters: dict[str, int] = {}
    rows = []
    for relation_type, atom_id, metadata in related:
        ordinal = counters.get(relation_type, 0)
        counters[relation_type] = ordinal + 1
        rows.append(
            {
                "from_atom_id": stored.root.atom_id,
                "relation_type": relation_type,
                "ordinal": ordinal,
                "to_atom_id": atom_id,
                "metadata": without_nul(metadata),
            }
        )
    connection.execute(pg_insert(atom_relations).values(rows).on_conflict_do_nothing())


def _store_model(connection: Connection, stored: FileAtoms, model: ModelDescription) -> None:
    created = connection.execute(
        pg_insert(models)
        .values(
            atom_id=stored.root.atom_id,
            format=model.format,
            # A file may name its architecture at any length; the full name stays in metadata.
            architecture=model.architecture[:_ARCHITECTURE_LENGTH] if model.architecture else None,
            parameter_count=model.parameter_count,
            tensor_count=len(model.tensors),
            dtypes=dict(model.dtypes),
            metadata=without_nul(json.loads(json.dumps(model.metadata))),
        )
        .on_conflict_do_nothing()
        .returning(models.c.atom_id)
    ).scalar_one_or_none()
    if created is None or not model.tensors:
        return
    span_atoms = {(offset, length): atom for offset, length, atom in stored.spans}
    rows = [
        {
            "model_atom_id": stored.root.atom_id,
            "ordinal": ordinal,
            "name": tensor.name,
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "parameter_count": tensor.parameter_count,
            "tensor_atom_id": span_atoms.get((tensor.offset, tensor.length))
            if tensor.offset is not None
            else None,
            "byte_offset": tensor.offset,
            "byte_length": tensor.length,
            "metadata": without_nul(dict(tensor.metadata)),
        }
        for ordinal, tensor in enumerate(model.tensors)
    ]
    connection.execute(insert(model_tensors), rows)
    # The file's atom may predate this model, stored from the same bytes as an opaque file (an
    # ONNX file under another name) and cut into other spans: its tensors' atoms are then not
    # its components. A relation keeps them referenced (gc would otherwise find them at zero
    # while model_tensors points at them) and visible to the file's holders.
    components = set(
        connection.execute(
            select(atom_components.c.child_atom_id).where(
                atom_components.c.parent_atom_id == stored.root.atom_id
            )
        ).scalars()
    )
    _relate(
        connection,
        stored,
        [
            ("tensor", atom, {"name": tensor.name})
            for tensor, row in zip(model.tensors, rows, strict=True)
            if isinstance(atom := row["tensor_atom_id"], bytes) and atom not in components
        ],
    )


def _record_failure(engine: Engine, slot: _Slot, reason: str) -> FileOutcome:
    path = str(slot.path)
    error = f"{path}: {reason}"
    with engine.begin() as connection:
        connection.execute(
            insert(ingestion_job_atoms).values(
                tenant_id=slot.request.tenant_id,
                job_id=slot.job_id,
                ordinal=slot.ordinal,
                path=path,
                status="failed",
                error=error,
            )
        )
    return FileOutcome(path, None, "failed", error, 0, 0)
