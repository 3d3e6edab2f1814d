"""The `onnx_run` task: run an ONNX model the tenant holds on the request's input tensors
(docs/inference.md, "onnx_run").

The request's ``input``::

    {"inputs": {"<input name>": {"atom_id": "<64 hex>"}
                              | {"dtype": "float32", "shape": [1, 4], "data": [[...]]}},
     "outputs": ["<output name>", ...]}          # optional: every tensor output

and ``TaskRequest.model_atom_id`` the model. An ``atom_id`` input is an atom the tenant holds
whose bytes are one `.npy` array. The model's bytes are rebuilt from its atoms, external data
included (onnx_model.py), and its onnxruntime session kept per process, least recently used
first out, ``[inference] session_cache_size`` of them (0: none), keyed by the model's atom id
and its external data files' atom ids. Inputs are checked against the session's inputs
(tensors.py) before anything runs. Steps: ``read_inputs`` (when atoms are referenced),
``reconstruct``, ``session_create``, ``run``. The inference is billed for the run's seconds,
rounded up to the microsecond (the ledger's scale).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import numpy as np
from sqlalchemy import Connection, text

from hartonomous.atoms.read import AtomNotFoundError, read_atom_bytes, require_visible
from hartonomous.inference.onnx_model import (
    ORT_ERRORS,
    LoadedModel,
    ModelSource,
    create_session,
    forget_model_facts,
    locate_model,
    ort_reason,
    reconstructed,
)
from hartonomous.inference.session_cache import LruCache
from hartonomous.inference.tasks import (
    InferenceInputError,
    InputAtom,
    OutputFile,
    StepRecord,
    TaskContext,
    TaskResult,
)
from hartonomous.inference.tensors import (
    NPY_MEDIA_TYPE,
    Array,
    TensorSpec,
    check_inputs,
    describe_output,
    element_bytes,
    npy_bytes,
    tensor_from_json,
    tensor_from_npy,
)
from hartonomous.json_types import JsonValue

__all__ = ["clear_sessions", "run_onnx"]

_SESSIONS: LruCache[tuple[bytes, tuple[tuple[str, bytes], ...]], LoadedModel] = LruCache()
_MICROSECOND = Decimal("0.000001")
_REQUEST_FIELDS = frozenset({"inputs", "outputs"})
_DIGEST_HEX_LENGTH = 64
# An input atom's size, and whether the tenant holds it directly (else atoms/read.py decides
# visibility through containers); size NULL for an unknown atom, which no tenant can see.
_INPUT_ATOM = text(
    "SELECT EXISTS (SELECT 1 FROM holdings h WHERE h.tenant_id = :tenant_id "
    "AND h.atom_id = :atom_id) AS held, "
    "(SELECT size_bytes FROM atoms WHERE atom_id = :atom_id) AS size_bytes"
)


@dataclass(frozen=True)
class _Inputs:
    feeds: dict[str, Array]
    atoms: tuple[InputAtom, ...]
    atom_bytes: int


def clear_sessions() -> None:
    """Forget every cached session, and the models' facts, of this process (tests and
    benchmarks start cold)."""
    _SESSIONS.clear()
    forget_model_facts()


def run_onnx(context: TaskContext) -> TaskResult:
    """Run the request's ONNX model on its inputs.

    Output JSON: ``{"outputs": [{"name", "dtype", "shape", "values"?}], "omitted_outputs":
    [{"name", "type"}]}`` (values only for outputs of at most 256 elements; outputs that are
    not tensors, such as a classifier's sequence of maps, are omitted unless named, which is
    an error); one `.npy` ``OutputFile`` per output, named as the output. Raises
    ``InferenceInputError`` for anything in the request that cannot run, before the run.
    """
    request = context.request
    limits = context.settings.inference
    if request.model_atom_id is None:
        raise InferenceInputError("onnx_run needs a model (model_atom_id)")
    inline, referenced, wanted = _parse_request(request.input)
    steps: list[StepRecord] = []
    # Autocommit: no BEGIN and ROLLBACK round trips on the warm path. The run reads only
    # immutable rows (atoms, models) and holdings; under READ COMMITTED each statement took
    # its own snapshot anyway.
    with context.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        started = time.perf_counter_ns()
        source = locate_model(
            connection, request.tenant_id, request.model_atom_id, limits.max_model_bytes
        )
        located = time.perf_counter_ns() - started
        inputs = _read_inputs(
            connection, request.tenant_id, inline, referenced, limits.max_input_bytes
        )
        if inputs.atoms:
            steps.append(
                StepRecord(
                    operation="read_inputs",
                    duration_ms=_ms(time.perf_counter_ns() - started - located),
                    rows_returned=len(inputs.atoms),
                    detail={"bytes": inputs.atom_bytes},
                )
            )
        loaded, load_steps = _session(connection, source, limits.session_cache_size, located)
        steps += load_steps
    names = _output_names(loaded.outputs, wanted)
    check_inputs(loaded.inputs, loaded.optional, inputs.feeds)
    started = time.perf_counter_ns()
    try:
        results = loaded.session.run(names, inputs.feeds)
    except ORT_ERRORS as error:
        raise InferenceInputError(
            f"model {source.atom_id.hex()}: the run failed: {ort_reason(error)}"
        ) from None
    elapsed = time.perf_counter_ns() - started
    steps.append(
        StepRecord(
            operation="run",
            duration_ms=_ms(elapsed),
            model_atom_id=source.atom_id,
            rows_returned=len(names),
        )
    )
    arrays = [np.asarray(result) for result in results]
    omitted: list[JsonValue] = [
        {"name": spec.name, "type": spec.type}
        for spec in loaded.outputs
        if wanted is None and spec.name not in names
    ]
    return TaskResult(
        output={
            "outputs": [describe_output(n, a) for n, a in zip(names, arrays, strict=True)],
            "omitted_outputs": omitted,
        },
        usage_units=(Decimal(elapsed) / Decimal(1_000_000_000)).quantize(
            _MICROSECOND, ROUND_CEILING
        ),
        input_atoms=inputs.atoms,
        output_files=[
            OutputFile(name=n, data=npy_bytes(a), media_type=NPY_MEDIA_TYPE)
            for n, a in zip(names, arrays, strict=True)
        ],
        steps=steps,
    )


def _ms(nanoseconds: int) -> float:
    return nanoseconds / 1_000_000


def _parse_request(
    request: Mapping[str, JsonValue],
) -> tuple[dict[str, Mapping[str, JsonValue]], dict[str, bytes], list[str] | None]:
    """(inline tensors, atom-referenced inputs, wanted outputs or None for all)."""
    unknown = set(request) - _REQUEST_FIELDS
    if unknown:
        raise InferenceInputError(
            f"onnx_run input: unknown field {sorted(unknown)[0]!r} (fields: inputs, outputs)"
        )
    given = request.get("inputs")
    if not isinstance(given, dict):
        raise InferenceInputError('onnx_run input: "inputs" must be an object of named tensors')
    inline: dict[str, Mapping[str, JsonValue]] = {}
    referenced: dict[str, bytes] = {}
    for name, value in given.items():
        if not isinstance(value, dict):
            raise InferenceInputError(f"input {name!r}: a tensor is an object, given {value!r}")
        if "atom_id" in value:
            referenced[name] = _atom_id(name, value)
        else:
            inline[name] = value
    wanted = request.get("outputs")
    if wanted is None:
        return inline, referenced, None
    if (
        not isinstance(wanted, list)
        or not wanted
        or not all(isinstance(item, str) for item in wanted)
        or len(set(map(str, wanted))) != len(wanted)
    ):
        raise InferenceInputError(
            'onnx_run input: "outputs" must be a non-empty list of distinct output names '
            "(leave it out for every tensor output)"
        )
    return inline, referenced, [str(item) for item in wanted]


def _atom_id(name: str, value: Mapping[str, JsonValue]) -> bytes:
    if set(value) != {"atom_id"}:
        raise InferenceInputError(
            f"input {name!r}: an atom reference has the one field atom_id, given {sorted(value)}"
        )
    hex_id = value["atom_id"]
    try:
        if not isinstance(hex_id, str) or len(hex_id) != _DIGEST_HEX_LENGTH:
            raise ValueError(hex_id)
        return bytes.fromhex(hex_id)
    except ValueError:
        raise InferenceInputError(
            f"input {name!r}: atom_id must be 64 hexadecimal digits, given {hex_id!r}"
        ) from None


def _read_inputs(
    connection: Connection,
    tenant_id: str,
    inline: Mapping[str, Mapping[str, JsonValue]],
    referenced: Mapping[str, bytes],
    max_input_bytes: int,
) -> _Inputs:
    feeds: dict[str, Array] = {}
    total = 0

    def count(name: str, size: int) -> None:
        nonlocal total
        total += size
        if total > max_input_bytes:
            raise InferenceInputError(
                f"input {name!r}: the inputs reach {total} bytes, over the limit of "
                f"{max_input_bytes} ([inference] max_input_bytes)"
            )

    for name, value in inline.items():
        feeds[name] = tensor_from_json(name, value)
        count(name, element_bytes(feeds[name]))
    atom_bytes = 0
    for name, atom_id in referenced.items():
        row = connection.execute(_INPUT_ATOM, {"tenant_id": tenant_id, "atom_id": atom_id}).one()
        if not row.held:
            try:
                require_visible(connection, tenant_id, atom_id)
            except AtomNotFoundError:
                raise InferenceInputError(
                    f"input {name!r}: atom {atom_id.hex()} not found"
                ) from None
        size = row.size_bytes
        # Checked before the atom is read: an oversized input costs no reconstruction.
        count(name, int(size))
        feeds[name] = tensor_from_npy(name, b"".join(read_atom_bytes(connection, atom_id)))
        atom_bytes += int(size)
    atoms = tuple(InputAtom(name=name, atom_id=atom_id) for name, atom_id in referenced.items())
    return _Inputs(feeds, atoms, atom_bytes)


def _session(
    connection: Connection, source: ModelSource, capacity: int, located_ns: int
) -> tuple[LoadedModel, list[StepRecord]]:
    """The model's session, from the cache or reconstructed and created; with its steps."""
    cached = _SESSIONS.get(source.cache_key, capacity)
    detail: dict[str, JsonValue] = {
        "model_bytes": source.total_bytes,
        "external_files": len(source.external_files),
    }
    if cached is not None:
        return cached, [
            StepRecord(
                operation="reconstruct",
                duration_ms=_ms(located_ns),
                model_atom_id=source.atom_id,
                cache_used=True,
                detail={"bytes": 0, **detail},
            ),
            StepRecord(
                operation="session_create",
                duration_ms=0.0,
                model_atom_id=source.atom_id,
                cache_used=True,
            ),
        ]
    started = time.perf_counter_ns()
    with reconstructed(connection, source) as image:
        rebuilt = time.perf_counter_ns()
        created = create_session(source, image)
    done = time.perf_counter_ns()
    loaded = _SESSIONS.put(source.cache_key, created, capacity)
    return loaded, [
        StepRecord(
            operation="reconstruct",
            duration_ms=_ms(located_ns + rebuilt - started),
            model_atom_id=source.atom_id,
            detail={"bytes": source.total_bytes, **detail},
        ),
        StepRecord(
            operation="session_create",
            duration_ms=_ms(done - rebuilt),
            model_atom_id=source.atom_id,
        ),
    ]


def _output_names(outputs: Sequence[TensorSpec], wanted: list[str] | None) -> list[str]:
    """The outputs to fetch: those named, or every tensor output."""
    if wanted is None:
        return [spec.name for spec in outputs if spec.dtype is not None]
    specs = {spec.name: spec for spec in outputs}
    for name in wanted:
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(repr(spec.name) for spec in outputs)
            raise InferenceInputError(f"output {name!r}: the model has no such output ({known})")
        if spec.dtype is None:
            raise InferenceInputError(
                f"output {name!r} is {spec.type}: only tensor outputs can be returned"
            )
    return wanted
