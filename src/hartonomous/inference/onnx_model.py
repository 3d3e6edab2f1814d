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

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from sqlalchemy import Connection, text

from hartonomous.atoms.read import AtomNotFoundError, read_atom_bytes, require_visible
from hartonomous.inference.session_cache import LruCache
from hartonomous.inference.tasks import InferenceInputError
from hartonomous.inference.tensors import Dim, TensorSpec
from hartonomous.json_types import JsonValue

__all__ = [
    "ORT_ERRORS",
    "ExternalFile",
    "LoadedModel",
    "ModelSource",
    "create_session",
    "forget_model_facts",
    "locate_model",
    "ort_reason",
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


def ort_reason(error: Exception) -> str:
    """The first line of onnxruntime's message (the rest repeats it with source locations)."""
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)


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


@dataclass(frozen=True)
class _ModelFacts:
    """What `models` and `model_tensors` say of a model atom. Those rows are written once,
    with the atom, and never change: the facts are kept per process (``_FACTS``).
    ``needed``: each external data location, with the end of the furthest byte range a tensor
    reads from it and that tensor's name."""

    format: str | None  # None: the atom is not a model
    size_bytes: int
    declared_shapes: Mapping[str, tuple[Dim, ...] | None]
    needed: Mapping[str, tuple[int, str]]
    # Why the model cannot run whoever holds it (an unusable external data entry); told only
    # to a tenant that can see the model.
    problem: str | None = None


_FACTS: LruCache[bytes, _ModelFacts] = LruCache()
_FACTS_KEPT = 1024

_MODEL_FACTS = text(
    """
    SELECT m.format, a.size_bytes, m.metadata -> 'inputs' AS inputs,
           ARRAY(SELECT jsonb_build_array(t.name, t.metadata -> 'external_data')
                 FROM model_tensors t WHERE t.model_atom_id = m.atom_id
                 AND t.metadata ->> 'storage' = 'external' ORDER BY t.ordinal) AS external
    FROM models m JOIN atoms a USING (atom_id) WHERE m.atom_id = :atom_id
    """
)

# What may change between runs, in one round trip: whether the tenant holds the model
# directly (else atoms/read.py decides visibility through containers) and, for each of the
# tenant's holdings of it (newest first: ``rank``), the newest holding of each external data
# location beside it. "Beside" is the holding's source up to its last "/" followed by the
# location, percent-encoded in a file: URI (RFC 8089, as Path.as_uri writes them) and as
# given in an uploaded file's name.
_HOLDINGS = text(
    """
    SELECT EXISTS (SELECT 1 FROM holdings h WHERE h.tenant_id = :tenant_id
                   AND h.atom_id = :atom_id) AS held,
           ARRAY(
               SELECT jsonb_build_array(source.rank, place.location,
                                        encode(beside.atom_id, 'hex'), beside.size_bytes)
               FROM (SELECT h.source_uri,
                            row_number() OVER (ORDER BY h.created_at DESC, h.holding_id) AS rank
                     FROM holdings h WHERE h.tenant_id = :tenant_id AND h.atom_id = :atom_id
                    ) AS source
               CROSS JOIN unnest(CAST(:locations AS text[]), CAST(:encoded AS text[]))
                   AS place(location, encoded)
               JOIN LATERAL (
                   SELECT h.atom_id, a.size_bytes FROM holdings h JOIN atoms a USING (atom_id)
                   WHERE h.tenant_id = :tenant_id
                   AND h.source_uri = regexp_replace(source.source_uri, '[^/]*$', '')
                       || CASE WHEN source.source_uri LIKE 'file:%' THEN place.encoded
                               ELSE place.location END
                   ORDER BY h.created_at DESC, h.holding_id LIMIT 1
               ) AS beside ON true
           ) AS beside
    """
)


def forget_model_facts() -> None:
    """Forget the models' facts this process keeps (tests and benchmarks start cold)."""
    _FACTS.clear()


def locate_model(
    connection: Connection, tenant_id: str, atom_id: bytes, max_model_bytes: int
) -> ModelSource:
    """The ONNX model ``atom_id`` as ``tenant_id`` holds it, with its external data files.

    One round trip once the model's facts are known. Raises ``InferenceInputError``: not found
    (unknown, or not visible to the tenant), a format other than ONNX, an external data file
    the tenant does not hold beside the model or that is too short, or a total size over
    ``max_model_bytes``.
    """
    label = f"model {atom_id.hex()}"
    facts = _FACTS.get(atom_id, _FACTS_KEPT) or _model_facts(connection, label, atom_id)
    locations = sorted(facts.needed)
    row = connection.execute(
        _HOLDINGS,
        {
            "tenant_id": tenant_id,
            "atom_id": atom_id,
            "locations": locations,
            "encoded": [quote(location) for location in locations],
        },
    ).one()
    if not row.held:
        try:
            require_visible(connection, tenant_id, atom_id)
        except AtomNotFoundError:
            raise InferenceInputError(f"{label} not found") from None
    if facts.format is None:
        raise InferenceInputError(f"{label} not found (the atom is not a model)")
    if facts.format != RUNNABLE_FORMAT:
        raise InferenceInputError(f"{label}: format {facts.format} cannot run: only onnx")
    if facts.problem is not None:
        raise InferenceInputError(facts.problem)
    external = _external_files(label, facts.needed, row.beside)
    source = ModelSource(atom_id, facts.size_bytes, external, facts.declared_shapes)
    if source.total_bytes > max_model_bytes:
        raise InferenceInputError(
            f"{label} is {source.total_bytes} bytes (external data included), over the limit "
            f"of {max_model_bytes} ([inference] max_model_bytes)"
        )
    return source


def _model_facts(connection: Connection, label: str, atom_id: bytes) -> _ModelFacts:
    row = connection.execute(_MODEL_FACTS, {"atom_id": atom_id}).one_or_none()
    if row is None:
        # Not kept: the atom may become a model later (ingested again as one).
        return _ModelFacts(None, 0, {}, {})
    needed: dict[str, tuple[int, str]] = {}
    problem = None
    try:
        for entry in row.external:
            name, external = entry if isinstance(entry, list) and len(entry) == 2 else ("", None)
            location, end = _external_range(label, str(name), external)
            if end > needed.get(location, (-1, ""))[0]:
                needed[location] = (end, str(name))
    except InferenceInputError as error:
        problem, needed = str(error), {}
    facts = _ModelFacts(
        row.format, int(row.size_bytes), _declared_shapes(row.inputs), needed, problem
    )
    return _FACTS.put(atom_id, facts, _FACTS_KEPT)


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
    label: str, needed: Mapping[str, tuple[int, str]], beside: list[JsonValue]
) -> tuple[ExternalFile, ...]:
    """The external data files beside the newest holding of the model that has all of them;
    ``beside`` holds [rank of the model's holding, location, atom id (hex), size] rows."""
    if not needed:
        return ()
    found: dict[int, dict[str, ExternalFile]] = {}
    for rank, location, atom_hex, size in (entry for entry in beside if isinstance(entry, list)):
        found.setdefault(int(str(rank)), {})[str(location)] = ExternalFile(
            str(location), bytes.fromhex(str(atom_hex)), int(str(size))
        )
    for rank in sorted(found):
        if len(found[rank]) < len(needed):
            continue
        files = tuple(found[rank][location] for location in sorted(needed))
        for file in files:
            end, tensor = needed[file.location]
            if end > file.size_bytes:
                raise InferenceInputError(
                    f"{label}: external data file {file.location!r} is {file.size_bytes} "
                    f"bytes; tensor {tensor!r} reads up to byte {end}"
                )
        return files
    missing = sorted(set(needed) - set(found[min(found)]) if found else needed)
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
    options = onnxruntime.SessionOptions()
    # onnxruntime's worker threads otherwise spin on the cores after each run, and the
    # database round trips of the next request wait behind them.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(
            str(image) if isinstance(image, Path) else image, options, providers=_PROVIDERS
        )
    except ORT_ERRORS as error:
        raise InferenceInputError(
            f"model {source.atom_id.hex()}: onnxruntime cannot load it: {ort_reason(error)}"
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
