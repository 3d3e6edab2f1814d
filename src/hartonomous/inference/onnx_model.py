"""An ONNX model a tenant holds, found, reconstructed from its atoms and loaded into an
onnxruntime session (docs/inference.md, "onnx_run").

Ingestion records an initializer kept in an external file by its ONNX ``external_data``
entries (``location`` relative to the model's folder, ``offset``, ``length``) in
`model_tensors.metadata` (ingest/models/onnx_reader.py); the external file itself is ingested
as a file of its own. Here it is found again as the tenant's holding whose source is the
model's source with its last segment replaced by ``location`` (a ``file:`` URI, or an
uploaded file's given name), the newest such holding first. A model without external data is
handed to onnxruntime as bytes; one with external data is written to a private temporary
folder, the external files at their relative locations, and loaded from there (the folder is
removed once the session exists: onnxruntime has read or mapped what it needs).
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urljoin

import onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from sqlalchemy import Connection, text

from hartonomous.atoms.read import AtomNotFoundError, read_atom_bytes, require_visible
from hartonomous.inference.tasks import InferenceInputError
from hartonomous.inference.tensors import Dim, TensorSpec
from hartonomous.json_types import JsonValue

__all__ = [
    "ORT_ERRORS",
    "ExternalFile",
    "LoadedModel",
    "ModelSource",
    "create_session",
    "locate_model",
    "reconstructed",
]

RUNNABLE_FORMAT = "onnx"
_PROVIDERS = ["CPUExecutionProvider"]

# What onnxruntime raises for a model or a run it refuses (all derive from Exception alone).
ORT_ERRORS: tuple[type[Exception], ...] = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NoModel,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
    ort_state.EPFail,
)


@dataclass(frozen=True)
class ExternalFile:
    """An external data file of the model: where the model expects it, and the atom it is."""

    location: str
    atom_id: bytes
    size_bytes: int


@dataclass(frozen=True)
class ModelSource:
    """A runnable model the tenant holds, before reconstruction. ``declared_shapes``: each
    graph input's shape as ingestion read it (None: the model declares no shape)."""

    atom_id: bytes
    size_bytes: int
    external_files: tuple[ExternalFile, ...]
    declared_shapes: Mapping[str, tuple[Dim, ...] | None]

    @property
    def total_bytes(self) -> int:
        """The model file and its external data files, in bytes."""
        return self.size_bytes + sum(file.size_bytes for file in self.external_files)

    @property
    def cache_key(self) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
        # The same model file may sit beside other external data for another tenant: the
        # session depends on both.
        return self.atom_id, tuple((f.location, f.atom_id) for f in self.external_files)


@dataclass(frozen=True)
class LoadedModel:
    """A runtime session and what it takes and gives: ``inputs`` all required, ``optional``
    the initializers a caller may override."""

    session: onnxruntime.InferenceSession
    inputs: tuple[TensorSpec, ...]
    optional: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def locate_model(
    connection: Connection, tenant_id: str, atom_id: bytes, max_model_bytes: int
) -> ModelSource:
    """The ONNX model ``atom_id`` as ``tenant_id`` holds it, with its external data files.

    Raises ``InferenceInputError``: not found (unknown, or not visible to the tenant), a format
    other than ONNX, an external data file the tenant does not hold beside the model or that
    is too short, or a total size over ``max_model_bytes``.
    """
    label = f"model {atom_id.hex()}"
    try:
        require_visible(connection, tenant_id, atom_id)
    except AtomNotFoundError:
        raise InferenceInputError(f"{label} not found") from None
    row = connection.execute(
        text(
            "SELECT m.format, a.size_bytes, m.metadata -> 'inputs' AS inputs "
            "FROM models m JOIN atoms a USING (atom_id) WHERE m.atom_id = :atom_id"
        ),
        {"atom_id": atom_id},
    ).one_or_none()
    if row is None:
        raise InferenceInputError(f"{label} not found (the atom is not a model)")
    if row.format != RUNNABLE_FORMAT:
        raise InferenceInputError(f"{label}: format {row.format} cannot run: only onnx")
    external = _external_files(connection, tenant_id, atom_id)
    source = ModelSource(atom_id, int(row.size_bytes), external, _declared_shapes(row.inputs))
    if source.total_bytes > max_model_bytes:
        raise InferenceInputError(
            f"{label} is {source.total_bytes} bytes (external data included), over the limit "
            f"of {max_model_bytes} ([inference] max_model_bytes)"
        )
    return source


def _declared_shapes(inputs: JsonValue) -> dict[str, tuple[Dim, ...] | None]:
    shapes: dict[str, tuple[Dim, ...] | None] = {}
    for entry in inputs if isinstance(inputs, list) else []:
        if isinstance(entry, dict) and isinstance(name := entry.get("name"), str):
            shape = entry.get("shape")
            shapes[name] = (
                tuple(dim if isinstance(dim, int | str) else None for dim in shape)
                if isinstance(shape, list)
                else None
            )
    return shapes


def _external_files(
    connection: Connection, tenant_id: str, atom_id: bytes
) -> tuple[ExternalFile, ...]:
    label = f"model {atom_id.hex()}"
    # Each location, and the end of the furthest range any tensor reads from it.
    needed: dict[str, tuple[int, str]] = {}
    for name, entries in connection.execute(
        text(
            "SELECT name, metadata -> 'external_data' FROM model_tensors "
            "WHERE model_atom_id = :atom_id AND metadata ->> 'storage' = 'external' "
            "ORDER BY ordinal"
        ),
        {"atom_id": atom_id},
    ):
        location, end = _external_range(label, name, entries)
        if end > needed.get(location, (-1, ""))[0]:
            needed[location] = (end, name)
    if not needed:
        return ()
    sources = list(
        connection.execute(
            text(
                "SELECT source_uri FROM holdings WHERE tenant_id = :tenant_id "
                "AND atom_id = :atom_id ORDER BY created_at DESC, holding_id"
            ),
            {"tenant_id": tenant_id, "atom_id": atom_id},
        ).scalars()
    )
    candidates = {
        source: {location: _sibling(source, location) for location in needed} for source in sources
    }
    held = {
        row.source_uri: (bytes(row.atom_id), int(row.size_bytes))
        for row in connection.execute(
            text(
                "SELECT DISTINCT ON (h.source_uri) h.source_uri, h.atom_id, a.size_bytes "
                "FROM holdings h JOIN atoms a USING (atom_id) "
                "WHERE h.tenant_id = :tenant_id AND h.source_uri = ANY(:uris) "
                "ORDER BY h.source_uri, h.created_at DESC, h.holding_id"
            ),
            {
                "tenant_id": tenant_id,
                "uris": sorted({uri for uris in candidates.values() for uri in uris.values()}),
            },
        )
    }
    # The newest holding of the model beside which every external file is held.
    for uris in candidates.values():
        if all(uri in held for uri in uris.values()):
            files = tuple(
                ExternalFile(location, *held[uris[location]]) for location in sorted(needed)
            )
            for file in files:
                end, tensor = needed[file.location]
                if end > file.size_bytes:
                    raise InferenceInputError(
                        f"{label}: external data file {file.location!r} is {file.size_bytes} "
                        f"bytes; tensor {tensor!r} reads up to byte {end}"
                    )
            return files
    missing = sorted(needed)
    raise InferenceInputError(
        f"{label}: external data file {missing[0]!r} not found beside the model "
        "(ingest the model's folder, external data files included)"
    )


def _external_range(label: str, tensor: str, entries: JsonValue) -> tuple[str, int]:
    """(location, end of the bytes read) of one tensor's ONNX ``external_data`` entries."""
    fields = entries if isinstance(entries, dict) else {}
    location = fields.get("location")
    if not isinstance(location, str) or not location:
        raise InferenceInputError(f"{label}: tensor {tensor!r} names no external data location")
    path = PurePosixPath(location)
    if path.is_absolute() or ".." in path.parts or "\\" in location:
        raise InferenceInputError(
            f"{label}: tensor {tensor!r}: external data location {location!r} is outside the "
            "model's folder"
        )
    try:
        offset = int(str(fields.get("offset", 0)))
        length = int(str(fields.get("length", 0)))
    except ValueError:
        raise InferenceInputError(
            f"{label}: tensor {tensor!r}: external data offset or length is not a number"
        ) from None
    return str(path), offset + length


def _sibling(source: str, location: str) -> str:
    """The source of a file at ``location`` relative to the folder of ``source``."""
    if source.startswith("file:"):
        # Holdings record file: URIs percent-encoded (RFC 8089), as Path.as_uri writes them.
        return urljoin(source, quote(location))
    return posixpath.normpath(posixpath.join(posixpath.dirname(source), location))


@contextmanager
def reconstructed(connection: Connection, source: ModelSource) -> Iterator[bytes | Path]:
    """The model's exact bytes, or with external data the path of the model file in a private
    temporary folder holding its external files at their locations (removed afterwards)."""
    if not source.external_files:
        yield b"".join(read_atom_bytes(connection, source.atom_id))
        return
    with tempfile.TemporaryDirectory(prefix="hartonomous-onnx-") as folder:
        root = Path(folder)
        model_path = root / f"{source.atom_id.hex()}.onnx"
        _write(connection, source.atom_id, model_path)
        for file in source.external_files:
            target = root / file.location
            target.parent.mkdir(parents=True, exist_ok=True)
            _write(connection, file.atom_id, target)
        yield model_path


def _write(connection: Connection, atom_id: bytes, path: Path) -> None:
    with path.open("xb") as out:
        for chunk in read_atom_bytes(connection, atom_id):
            out.write(chunk)


def create_session(source: ModelSource, image: bytes | Path) -> LoadedModel:
    """An onnxruntime session (CPU) on the reconstructed model.

    Raises ``InferenceInputError`` when onnxruntime refuses the model (an operator it does not
    implement, an invalid graph), with onnxruntime's reason.
    """
    try:
        session = onnxruntime.InferenceSession(
            str(image) if isinstance(image, Path) else image, providers=_PROVIDERS
        )
    except ORT_ERRORS as error:
        reason = next((line for line in str(error).splitlines() if line.strip()), "refused")
        raise InferenceInputError(
            f"model {source.atom_id.hex()}: onnxruntime cannot load it: {reason}"
        ) from None

    def spec(node: Any, declared: bool) -> TensorSpec:  # onnxruntime's NodeArg
        name, kind, shape = node.name, node.type, node.shape
        dims: tuple[Dim, ...] | None = tuple(shape) if isinstance(shape, list) else None
        # onnxruntime reports [] both for a scalar and for no declared shape; ingestion's
        # reading of the graph tells them apart.
        if declared and dims == () and name in source.declared_shapes:
            dims = source.declared_shapes[name]
        return TensorSpec(str(name), str(kind), dims)

    return LoadedModel(
        session=session,
        inputs=tuple(spec(node, True) for node in session.get_inputs()),
        optional=tuple(spec(node, False) for node in session.get_overridable_initializers()),
        outputs=tuple(spec(node, False) for node in session.get_outputs()),
    )
