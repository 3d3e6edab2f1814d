"""Storing one analysed file in the caller's transaction: its atoms, relations, model rows and
the tenant's holding. Every string and JSON value passes `hartonomous.storable` on its way in.

The caller owns the transaction (a file's own, or a savepoint inside a batch): anything raised
here rolls back all that this file wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, insert, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hartonomous.atoms.batch import AtomBatch
from hartonomous.atoms.store import AtomWriter, json_text
from hartonomous.db.array_param import BinaryArray
from hartonomous.db.tables import atom_components, atom_relations, holdings, model_tensors, models
from hartonomous.ingest.extractors import Extraction
from hartonomous.ingest.file_state import FileState, check_unchanged
from hartonomous.ingest.layout import (
    AtomSink,
    FileAtoms,
    tiles_file,
    write_binary_file,
    write_derived,
    write_text_file,
)
from hartonomous.ingest.models import ModelDescription
from hartonomous.json_types import JsonValue
from hartonomous.storable import storable_json, storable_object, storable_text

_ARCHITECTURE_LENGTH = 128  # models.architecture
_Related = list[tuple[str, bytes, dict[str, JsonValue]]]


@dataclass(frozen=True)
class Analysis:
    """What a file is, found before any of it is stored; `state` is the file's before reading."""

    state: FileState
    extraction: Extraction | None
    model: ModelDescription | None


@dataclass(frozen=True)
class StoredFile:
    atom_id: bytes
    holding_id: uuid.UUID
    created: bool
    new_bytes: int
    reused_bytes: int


@dataclass(frozen=True)
class Holder:
    """Who holds what is stored, and how: the holding's columns besides atom and source."""

    tenant_id: str
    job_id: uuid.UUID
    source_type: str
    visibility: str
    # A path's recorded source when it is not the path's file: URI (an upload's given name).
    source_names: Mapping[Path, str] = field(default_factory=dict)
    # The label every holding of the job gets in its metadata (`ingest --label`): what
    # classification votes with (docs/inference.md).
    label: str | None = None

    # Folders resolved so far in this job: the files of a folder share its resolution.
    _real_folders: dict[Path, Path] = field(default_factory=dict, compare=False, repr=False)

    def source_uri(self, path: Path) -> str:
        # as_uri percent-encodes the name's bytes (RFC 8089): a name that is not UTF-8 stays exact.
        return self.source_names.get(path) or self._resolved(path).as_uri()

    def _resolved(self, path: Path) -> Path:
        """``path.resolve()``, which costs a system call per component of the path, with
        the folder's part looked up once per folder: the file itself is checked each time
        (a symbolic link is resolved whole)."""
        if path.name in ("", ".", "..") or path.is_symlink():
            return path.resolve()
        folder = self._real_folders.get(path.parent)
        if folder is None:
            folder = self._real_folders[path.parent] = path.parent.resolve()
        return folder / path.name


def store_file(
    connection: Connection, holder: Holder, path: Path, analysis: Analysis
) -> StoredFile:
    """Write the file's atoms and holding. Raises ``FileChangedError`` (see file_state.py)."""
    writer = AtomWriter(connection)
    stored = _write_content(writer, path, analysis)
    content_new_bytes = writer.new_bytes
    related = write_derived(writer, analysis.extraction) if analysis.extraction else []
    _relate(connection, [(stored.root.atom_id, related)])
    if analysis.model is not None:
        _store_model(connection, stored, analysis.model)
    ((holding_id, created),) = _hold(connection, holder, [(path, stored)])
    return StoredFile(
        stored.root.atom_id,
        holding_id,
        created,
        writer.new_bytes,
        max(0, analysis.state.size - content_new_bytes),
    )


@dataclass
class PlannedFiles:
    """Files read and cut into atoms in memory, not yet written (`plan_files`)."""

    files: Sequence[tuple[Path, Analysis]]
    atoms: AtomBatch
    planned: dict[int, tuple[Path, FileAtoms, _Related]]
    failed: dict[int, Exception]


def plan_files(files: Sequence[tuple[Path, Analysis]]) -> PlannedFiles:
    """Read several files (not models) and plan their atoms; indexes are into `files`.

    A file that fails while it is read or planned is left out (nothing of it is kept) and its
    exception kept in `failed`.
    """
    batch = AtomBatch()
    planned: dict[int, tuple[Path, FileAtoms, _Related]] = {}
    failed: dict[int, Exception] = {}
    for index, (path, analysis) in enumerate(files):
        if analysis.model is not None:
            raise ValueError(f"{path}: a model file is stored alone, not in a batch")
        batch.start_file(index)
        try:
            stored = _write_content(batch, path, analysis)
            batch.start_derived()
            related = write_derived(batch, analysis.extraction) if analysis.extraction else []
        except Exception as exc:  # noqa: BLE001 - one file can never stop the others
            batch.discard(index)
            failed[index] = exc
            continue
        planned[index] = (path, stored, related)
    return PlannedFiles(files, batch, planned, failed)


def write_planned(
    connection: Connection, holder: Holder, plan: PlannedFiles
) -> dict[int, StoredFile]:
    """Write planned files together: their atoms (one `AtomBatch`), then one statement each for
    relations and holdings. An error raises, for the caller to roll back."""
    new_bytes, content_new_bytes = plan.atoms.write(connection)
    planned = plan.planned
    _relate(connection, [(stored.root.atom_id, related) for _, stored, related in planned.values()])
    holdings_made = _hold(
        connection, holder, [(path, stored) for path, stored, _ in planned.values()]
    )
    return {
        index: StoredFile(
            stored.root.atom_id,
            holding_id,
            created,
            new_bytes.get(index, 0),
            max(0, plan.files[index][1].state.size - content_new_bytes.get(index, 0)),
        )
        for (index, (_, stored, _)), (holding_id, created) in zip(
            planned.items(), holdings_made, strict=True
        )
    }


def _write_content(sink: AtomSink, path: Path, analysis: Analysis) -> FileAtoms:
    """The file's own bytes as atoms, checked to be one version of the file."""
    extraction = analysis.extraction
    size = analysis.state.size
    if extraction is not None and tiles_file(extraction.segments, size):
        data = path.read_bytes()
        check_unchanged(path, analysis.state, len(data))
        return write_text_file(sink, data, extraction)
    stored = write_binary_file(sink, path, size, extraction, analysis.model)
    check_unchanged(path, analysis.state, stored.root.size_bytes)
    return stored


# One statement whatever the number of files (rows as arrays): compiled once, planned once.
_HOLD = text(
    "INSERT INTO holdings (tenant_id, atom_id, source_uri, source_type, visibility, job_id, "
    "metadata) SELECT :tenant_id, f.atom_id, f.source_uri, :source_type, :visibility, :job_id, "
    "CAST(f.metadata AS jsonb) FROM unnest(CAST(:atom_ids AS bytea[]), "
    "CAST(:source_uris AS text[]), CAST(:metadata AS text[])) AS f(atom_id, source_uri, metadata) "
    "ON CONFLICT (tenant_id, source_uri, atom_id) DO NOTHING "
    "RETURNING holding_id, source_uri, atom_id"
)


def _hold(
    connection: Connection, holder: Holder, files: Sequence[tuple[Path, FileAtoms]]
) -> list[tuple[uuid.UUID, bool]]:
    """Each file's holding, in order, and whether it was made now (else it already existed)."""
    if not files:
        return []
    keys = [(holder.source_uri(path), stored.root.atom_id) for path, stored in files]
    made = {
        (row.source_uri, bytes(row.atom_id)): row.holding_id
        for row in connection.execute(
            _HOLD,
            {
                "tenant_id": holder.tenant_id,
                "source_type": holder.source_type,
                "visibility": holder.visibility,
                "job_id": holder.job_id,
                "atom_ids": BinaryArray([atom_id for _, atom_id in keys]),
                "source_uris": BinaryArray([source_uri for source_uri, _ in keys]),
                "metadata": BinaryArray(
                    json_text(
                        {
                            "file_name": storable_text(path.name),
                            "size_bytes": stored.root.size_bytes,
                            **({} if holder.label is None else {"label": holder.label}),
                        }
                    )
                    for path, stored in files
                ),
            },
        )
    }
    held = (
        {
            (row.source_uri, bytes(row.atom_id)): row.holding_id
            for row in connection.execute(
                select(holdings.c.holding_id, holdings.c.source_uri, holdings.c.atom_id).where(
                    holdings.c.tenant_id == holder.tenant_id,
                    tuple_(holdings.c.source_uri, holdings.c.atom_id).in_(
                        [key for key in keys if key not in made]
                    ),
                )
            )
        }
        if len(made) < len(set(keys))
        else {}
    )
    result: list[tuple[uuid.UUID, bool]] = []
    for key in keys:
        if key in made:
            # A file named twice in one batch (a link to it) holds it once: the first is new.
            result.append((made.pop(key), True))
            held[key] = result[-1][0]
        else:
            result.append((held[key], False))
    return result


def _relate(connection: Connection, files: Sequence[tuple[bytes, _Related]]) -> None:
    """The relations from each file atom to what was derived from it (ordinals per type)."""
    rows = []
    for root, related in files:
        counters: dict[str, int] = {}
        for relation_type, atom_id, metadata in related:
            ordinal = counters.get(relation_type, 0)
            counters[relation_type] = ordinal + 1
            rows.append(
                {
                    "from_atom_id": root,
                    "relation_type": relation_type,
                    "ordinal": ordinal,
                    "to_atom_id": atom_id,
                    "metadata": storable_object(metadata),
                }
            )
    if rows:
        connection.execute(pg_insert(atom_relations).on_conflict_do_nothing(), rows)


def _store_model(connection: Connection, stored: FileAtoms, model: ModelDescription) -> None:
    architecture = storable_text(model.architecture) if model.architecture else None
    created = connection.execute(
        pg_insert(models)
        .values(
            atom_id=stored.root.atom_id,
            format=model.format,
            # A file may name its architecture at any length; the full name stays in metadata.
            architecture=architecture[:_ARCHITECTURE_LENGTH] if architecture else None,
            parameter_count=model.parameter_count,
            tensor_count=len(model.tensors),
            dtypes=storable_json(dict(model.dtypes)),
            metadata=storable_json(model.metadata),
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
            "name": storable_text(tensor.name),
            "dtype": storable_text(tensor.dtype),
            "shape": list(tensor.shape),
            "parameter_count": tensor.parameter_count,
            "tensor_atom_id": span_atoms.get((tensor.offset, tensor.length))
            if tensor.offset is not None
            else None,
            "byte_offset": tensor.offset,
            "byte_length": tensor.length,
            "metadata": storable_object(tensor.metadata),
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
        [
            (
                stored.root.atom_id,
                [
                    ("tensor", atom, {"name": tensor.name})
                    for tensor, row in zip(model.tensors, rows, strict=True)
                    if isinstance(atom := row["tensor_atom_id"], bytes) and atom not in components
                ],
            )
        ],
    )
