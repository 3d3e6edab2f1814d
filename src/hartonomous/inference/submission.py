"""Submitting an inference request (docs/inference.md, "Submitting").

Atomically: the tenant (active), principal, model and referenced atoms are checked, the
caller's texts and tensor files are stored as atoms held by the tenant, and the request row
is written `pending` (the workers are woken by NOTIFY). The checks of tenant and model, the
cache lookup, the insert and the NOTIFY are one statement (``_queue``); a request with
nothing to store and no atom named sends only it, in autocommit. An identical earlier completed
request of the tenant (same task, model and input hash) answers at once instead: the new row
is written `completed` with ``cache_hit``, ``cached_from``, the earlier output, one
`cache_lookup` step and its stream, and nothing is queued.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    text,
    true,
)

from hartonomous.atoms.hashing import hex_to_digest
from hartonomous.atoms.read import AtomNotFoundError, require_visible, visible_to
from hartonomous.config import Settings
from hartonomous.db.tables import (
    atoms,
    inference_atoms,
    inference_requests,
    model_tensors,
    models,
    tenants,
)
from hartonomous.inference.blobs import hold_blob
from hartonomous.inference.canonical import canonical_request, input_hash
from hartonomous.inference.channels import NOTIFY_CHANNEL
from hartonomous.inference.inputs import PreparedInput, prepare_input
from hartonomous.inference.records import RequestRow, stream_model, write_steps
from hartonomous.inference.registry import task_for
from hartonomous.inference.streams import StreamParts, store_stream
from hartonomous.inference.tasks import (
    InferenceInputError,
    InferenceStatus,
    InferenceTask,
    StepRecord,
)
from hartonomous.json_types import JsonValue
from hartonomous.security.principals import validate_principal_id
from hartonomous.security.tenants import tenant_state, validate_tenant_id
from hartonomous.storable import storable_object

__all__ = [
    "MAX_ATTRIBUTES",
    "Submission",
    "Submitted",
    "make_durable",
    "submit",
]

MAX_ATTRIBUTES = 32
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_ATTRIBUTE_VALUE_CHARACTERS = 256
_TEXT_TASKS = frozenset(
    {InferenceTask.TEXT_EMBEDDING, InferenceTask.SEMANTIC_SEARCH, InferenceTask.CLASSIFICATION}
)


@dataclass(frozen=True)
class Submission:
    """A request as a caller makes it.

    ``input`` is the caller's JSON (forms in docs/inference.md, "Inputs"); ``model`` a model's
    atom hex (onnx_run); ``files`` .npy tensor bytes by input name (onnx_run); ``attributes``
    the billing meter's multiplier dimensions (docs/billing.md).
    """

    tenant_id: str
    task: InferenceTask
    input: object
    model: str | None = None
    principal_id: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    correlation_id: str | None = None


@dataclass(frozen=True)
class Submitted:
    inference_id: uuid.UUID
    status: InferenceStatus
    cache_hit: bool
    cached_from: uuid.UUID | None = None


def submit(
    engine: Engine,
    settings: Settings,
    submission: Submission,
    *,
    waited_on: Connection | None = None,
) -> Submitted:
    """Check, store and queue ``submission`` (or answer it from the cache) on ``engine``.

    A request whose inputs are all inline (nothing to store, no atom named) is checked and
    queued by one statement in its own implicit transaction (``_queue``): one round trip, and
    the caller is answered once it is durable. Otherwise one transaction holds the same
    statement, the named atoms' checks and the stored inputs.

    ``waited_on`` is given by a caller that waits for the outcome before it shows anything
    (``services.inference.run``, ``infer TASK --wait``): an autocommit connection of
    ``engine`` on which the inline statement runs, and the submission's commit does not wait
    for the WAL flush (``synchronous_commit`` off for its transaction). Nothing is
    acknowledged until the outcome, whose commit is durable and covers the submission's WAL
    record (written before it); the caller makes the row durable itself when it stops waiting
    first (``make_durable``). docs/inference.md, "Submitting".

    Raises ``TaskNotAvailableError`` (no implementation of the task), ``InferenceInputError``
    naming the problem (bad input, a model or atom not found for the tenant, inputs over
    ``[inference] max_input_bytes``), ``InvalidPrincipalError``, ``InvalidTenantError``,
    ``UnknownTenantError``, ``TenantDisabledError``. Nothing is written when it raises.
    """
    task = submission.task
    task_for(task)
    model_id = _model_id(task, submission.model)
    prepared = prepare_input(task, submission.input, submission.files)
    attributes = _attributes(submission.attributes)
    limit = settings.inference.max_input_bytes
    _check_size(prepared.inline_bytes, limit)
    if submission.principal_id is not None:
        validate_principal_id(submission.principal_id)
    validate_tenant_id(submission.tenant_id)
    inference_id = uuid.uuid4()
    values: dict[str, object] = {
        "tenant_id": submission.tenant_id,
        "inference_id": inference_id,
        "principal_id": submission.principal_id,
        "task": str(task),
        "model_atom_id": model_id,
        "input": prepared.input,
        "input_hash": input_hash(task, _hex(model_id), prepared.input),
        "attributes": attributes,
        "correlation_id": submission.correlation_id,
    }
    started = time.perf_counter()
    durable = waited_on is None
    if not prepared.blobs and not prepared.references:
        if waited_on is None:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                earlier = _queue(connection, values, durable=True)
        else:
            earlier = _queue(waited_on, values, durable=False)
        if earlier is None:
            return Submitted(inference_id, InferenceStatus.PENDING, cache_hit=False)
        with engine.begin() as connection:
            _answer_from_cache(connection, values, earlier, started)
    else:
        with engine.begin() as connection:
            earlier = _queue(connection, values, durable=durable)
            _check_size(
                prepared.inline_bytes + _referenced_bytes(connection, submission, prepared), limit
            )
            for blob in prepared.blobs:
                hold_blob(
                    connection,
                    submission.tenant_id,
                    inference_id,
                    role="input",
                    name=blob.name,
                    data=blob.data,
                    media_type=blob.media_type,
                )
            if earlier is None:
                return Submitted(inference_id, InferenceStatus.PENDING, cache_hit=False)
            _answer_from_cache(connection, values, earlier, started)
    return Submitted(inference_id, InferenceStatus.COMPLETED, cache_hit=True, cached_from=earlier)


# A row lock on the request in its own implicit transaction: the lock is a WAL record, so the
# commit (``synchronous_commit`` as the session has it: on) waits for the WAL flush, which
# covers the earlier submission's record. KEY SHARE does not wait for a worker's update of the
# row, and logical decoding (CDC) ignores row locks: no change is published.
_MAKE_DURABLE = text(
    "SELECT 1 FROM inference_requests WHERE tenant_id = :tenant_id"
    " AND inference_id = :inference_id FOR KEY SHARE"
)


def make_durable(connection: Connection, tenant_id: str, inference_id: uuid.UUID) -> None:
    """Make a submission made with ``waited_on`` durable before its id is shown without its
    outcome (a wait that timed out): one statement on the autocommit ``connection``."""
    connection.execute(_MAKE_DURABLE, {"tenant_id": tenant_id, "inference_id": inference_id})


def _queue(connection: Connection, values: dict[str, object], *, durable: bool) -> uuid.UUID | None:
    """Check the tenant (active) and the model (a `models` row the tenant sees), look for an
    earlier answer, and insert the row `pending` with the workers' NOTIFY unless one was
    found: all in one statement (``_queue_statement``). The earlier inference's id, or None
    when queued. Not ``durable``: the commit of its transaction does not wait for the WAL
    flush (``submit``'s ``waited_on``).

    Raises ``UnknownTenantError`` or ``TenantDisabledError`` (``security.tenant_state``), and
    ``InferenceInputError`` for a model not found."""
    tenant_id = str(values["tenant_id"])
    model_id = values["model_atom_id"]
    assert model_id is None or isinstance(model_id, bytes)
    found = connection.execute(
        _queue_statement(durable=durable, with_model=model_id is not None),
        # ``atom_id``: the model, for ``visible_to``'s statement.
        {**values, "atom_id": model_id},
    ).one()
    tenant_state(tenant_id, found.tenant_active)
    if not found.model_visible:
        raise InferenceInputError(f"model {_hex(model_id)} not found")
    earlier: uuid.UUID | None = found.earlier
    return earlier


@cache
def _queue_statement(*, durable: bool, with_model: bool) -> Select[Any]:
    """``_queue``'s statement, built once for each shape: its values are bound parameters
    named as ``inference_requests``' columns (building it and its cache key for every call
    cost about 2 ms of CPU per submission). Not ``durable``: ``set_config(..., true)`` in the
    statement is SET LOCAL, so its transaction's commit does not wait for the WAL flush."""
    columns = list(_QUEUED_COLUMNS)
    facts = select(
        select(tenants.c.is_active)
        .where(tenants.c.tenant_id == bindparam("tenant_id"))
        .scalar_subquery()
        .label("tenant_active"),
        _model_visible(with_model=with_model).label("model_visible"),
        _earlier(with_model=with_model).label("earlier"),
    ).cte("facts")
    queued = (
        insert(inference_requests)
        .from_select(
            columns,
            select(
                *(bindparam(name, type_=inference_requests.c[name].type) for name in columns)
            ).where(facts.c.tenant_active, facts.c.model_visible, facts.c.earlier.is_(None)),
        )
        .returning(inference_requests.c.inference_id)
        .cte("queued")
    )
    return select(
        facts.c.tenant_active,
        facts.c.model_visible,
        facts.c.earlier,
        # The workers' wake-up, only when the row was inserted (sent at commit).
        case(
            (queued.c.inference_id.is_not(None), func.pg_notify(NOTIFY_CHANNEL, "")),
            else_=null(),
        ),
        *([] if durable else [func.set_config("synchronous_commit", "off", True)]),
    ).select_from(facts.outerjoin(queued, true()))


# The columns a submission writes (``submit``'s values), bound by name in ``_queue_statement``.
_QUEUED_COLUMNS = (
    "tenant_id",
    "inference_id",
    "principal_id",
    "task",
    "model_atom_id",
    "input",
    "input_hash",
    "attributes",
    "correlation_id",
)


def _model_visible(*, with_model: bool) -> ColumnElement[bool]:
    """The model (``:model_atom_id``, also bound as ``:atom_id``) is a `models` row and the
    tenant sees its atom (``atoms.read``: never "forbidden", another tenant's model is the
    same as none); true without a model."""
    if not with_model:
        return true()
    return and_(
        exists().where(models.c.atom_id == bindparam("model_atom_id")),
        # The values given here are placeholders: the execution's parameters replace them.
        visible_to("", b""),
    )


def _earlier(*, with_model: bool) -> ScalarSelect[Any]:
    """The tenant's latest completed, computed (not itself a cache hit) inference of the
    same task and input hash, unless the model keeps tensors in external data files: those
    are found among the tenant's holdings when the job runs, so the same request can meet
    other weights later (a re-ingested folder), and it is never answered from the cache."""
    found = (
        select(inference_requests.c.inference_id)
        .where(
            inference_requests.c.tenant_id == bindparam("tenant_id"),
            inference_requests.c.task == bindparam("task"),
            inference_requests.c.input_hash == bindparam("input_hash"),
            inference_requests.c.status == "completed",
            ~inference_requests.c.cache_hit,
        )
        .order_by(inference_requests.c.finished_at.desc())
        .limit(1)
    )
    if with_model:
        found = found.where(
            ~exists().where(
                model_tensors.c.model_atom_id == bindparam("model_atom_id"),
                model_tensors.c.metadata["storage"].astext == "external",
            )
        )
    return found.scalar_subquery()


def _answer_from_cache(
    connection: Connection, values: dict[str, object], cached_from: uuid.UUID, started: float
) -> None:
    """Write the new row completed from the earlier inference ``cached_from``: output, its
    atoms, a step, a stream."""
    earlier = connection.execute(
        select(inference_requests.c.output, inference_requests.c.confidence).where(
            inference_requests.c.tenant_id == values["tenant_id"],
            inference_requests.c.inference_id == cached_from,
        )
    ).one()
    stream_id = uuid.uuid4()
    duration_ms = (time.perf_counter() - started) * 1000
    output: dict[str, JsonValue] = earlier.output
    connection.execute(
        insert(inference_requests).values(
            **values,
            status="completed",
            cache_hit=True,
            cached_from=cached_from,
            output=output,
            confidence=earlier.confidence,
            # Nothing was computed again: the units of a cache hit are zero.
            usage_units=Decimal(0),
            stream_id=stream_id,
            started_at=func.now(),
            finished_at=func.now(),
            duration_ms=duration_ms,
        )
    )
    row = RequestRow.of(
        connection.execute(
            select(inference_requests).where(
                inference_requests.c.tenant_id == values["tenant_id"],
                inference_requests.c.inference_id == values["inference_id"],
            )
        ).one()
    )
    write_steps(
        connection,
        row,
        [
            StepRecord(
                "cache_lookup",
                duration_ms,
                cache_used=True,
                rows_returned=1,
                detail={"cached_from": str(cached_from)},
            )
        ],
    )
    # The earlier inference's inputs and outputs are this one's too (same request, same answer).
    columns = [
        inference_atoms.c.role,
        inference_atoms.c.ordinal,
        inference_atoms.c.atom_id,
        inference_atoms.c.name,
        inference_atoms.c.holding_id,
    ]
    connection.execute(
        insert(inference_atoms).from_select(
            ["tenant_id", "inference_id", *(column.name for column in columns)],
            select(
                inference_atoms.c.tenant_id,
                literal(row.inference_id, inference_atoms.c.inference_id.type),
                *columns,
            ).where(
                inference_atoms.c.tenant_id == row.tenant_id,
                inference_atoms.c.inference_id == cached_from,
            ),
        )
    )
    parts = StreamParts(
        inference_id=row.inference_id,
        tenant_id=row.tenant_id,
        task=row.task,
        model=stream_model(row.model_atom_id),
        request=canonical_request(row.task, row.model_hex, row.input),
        control={
            "attributes": row.attributes,
            "cache_hit": True,
            "cached_from": str(cached_from),
        },
        telemetry={"duration_ms": duration_ms},
        output=output,
    )
    store_stream(connection, parts, stream_id)


def _hex(model_id: bytes | None) -> str | None:
    return None if model_id is None else model_id.hex()


def _model_id(task: InferenceTask, model: str | None) -> bytes | None:
    if task in _TEXT_TASKS:
        if model is not None:
            raise InferenceInputError(
                f"{task} runs the built-in text model and takes no model (got {model!r})"
            )
        return None
    if model is None:
        raise InferenceInputError(f"{task} needs a model (the model's atom id)")
    try:
        return hex_to_digest(model)
    except ValueError as exc:
        raise InferenceInputError(f"model: {exc}") from None


def _referenced_bytes(
    connection: Connection, submission: Submission, prepared: PreparedInput
) -> int:
    """The size of the atoms the input names, each checked visible to the tenant."""
    total = 0
    for name, atom_id in prepared.references:
        try:
            require_visible(connection, submission.tenant_id, atom_id)
        except AtomNotFoundError:
            raise InferenceInputError(f"input {name!r}: atom {atom_id.hex()} not found") from None
        total += connection.execute(
            select(atoms.c.size_bytes).where(atoms.c.atom_id == atom_id)
        ).scalar_one()
    return total


def _check_size(size: int, limit: int) -> None:
    if size > limit:
        raise InferenceInputError(
            f"the request's inputs are {size} bytes, over [inference] max_input_bytes ({limit})"
        )


def _attributes(given: Mapping[str, str]) -> dict[str, JsonValue]:
    if len(given) > MAX_ATTRIBUTES:
        raise InferenceInputError(f"at most {MAX_ATTRIBUTES} attributes, got {len(given)}")
    for name, value in given.items():
        if not _ATTRIBUTE_NAME.match(name):
            raise InferenceInputError(
                f"attribute name {name!r} must be 1-64 letters, digits or _ . : -"
            )
        if not isinstance(value, str) or len(value) > _ATTRIBUTE_VALUE_CHARACTERS:
            raise InferenceInputError(
                f"attribute {name!r} must be a string of at most {_ATTRIBUTE_VALUE_CHARACTERS} "
                "characters"
            )
    return storable_object(dict(given))
