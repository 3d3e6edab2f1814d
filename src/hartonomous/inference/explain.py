"""`explain INFERENCE`: one inference of a tenant with everything that says where its output
came from and what it cost (docs/provenance.md, "Explain").

Read from the source tables: the request, its input atoms with the tenant's holdings (and the
ingestion jobs) they came from, the model with its tensor summary, the steps, the output atoms,
the decoded generation stream, and the ledger row the sync worker wrote for it (keyed by
`billing.ledger.inference_ledger_key`). Money and units are decimal strings.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, select

from hartonomous.atoms.read import holders_of
from hartonomous.billing.ledger import inference_ledger_key
from hartonomous.db.tables import (
    atoms,
    billing_usage_ledger,
    generation_streams,
    inference_atoms,
    models,
)
from hartonomous.inference.lookup import InferenceStep, read_steps, require_inference
from hartonomous.inference.stream_view import DecodedStream, decode_stream, read_stream

__all__ = [
    "Cost",
    "Explanation",
    "InferenceAtom",
    "InferenceStep",
    "InputSource",
    "ModelSummary",
    "explain",
]

BillingState = Literal["billed", "not yet billed", "not billed"]


@dataclass(frozen=True)
class InputSource:
    """A holding of the tenant that has the input atom (itself or a file containing it)."""

    holding_id: str
    atom_id: str
    source_uri: str
    source_type: str
    job_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class InferenceAtom:
    """An input or output atom: ``size_bytes`` None when the atom is gone (gc)."""

    name: str
    ordinal: int
    atom_id: str
    holding_id: str | None
    size_bytes: int | None
    sources: list[InputSource]


@dataclass(frozen=True)
class ModelSummary:
    """``dtypes``: tensors per dtype; ``parameter_count`` over all tensors."""

    model_id: str
    format: str
    architecture: str | None
    tensor_count: int
    parameter_count: int
    dtypes: dict[str, int]


@dataclass(frozen=True)
class Cost:
    """The ledger row of the inference: ``state`` 'billed', 'not yet billed' (completed, the
    sync worker has not recorded it yet) or 'not billed' (not completed: never billed).
    Figures are decimal strings (NUMERIC(18,6)); None until billed."""

    state: BillingState
    operation: str | None
    units: str | None
    multiplier: str | None
    total_dcu: str | None
    unit_price: str | None
    total_cost: str | None
    recorded_at: datetime | None


@dataclass(frozen=True)
class Explanation:
    inference_id: str
    task: str
    status: str
    cache_hit: bool
    cached_from: str | None
    principal_id: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error: str | None
    # The task's answer as stored (JSON); None until completed.
    output: Any
    confidence: float | None
    usage_units: str | None
    attributes: dict[str, Any]
    rating: int | None
    feedback: str | None
    rated_at: datetime | None
    inputs: list[InferenceAtom]
    model: ModelSummary | None
    steps: list[InferenceStep]
    outputs: list[InferenceAtom]
    stream: DecodedStream | None
    cost: Cost


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def explain(connection: Connection, tenant_id: str, inference_id: uuid.UUID) -> Explanation:
    """Everything about one inference of the tenant. Raises ``InferenceNotFoundError`` (not
    the tenant's) and ``AtomicStreamError`` (stored stream bytes that do not decode)."""
    request = require_inference(connection, tenant_id, inference_id)
    used = _atoms(connection, tenant_id, inference_id)
    stream = None
    # A request whose stream id was not recorded (e.g. a failure's) may still have one.
    stream_id = request["stream_id"] or _stream_of(connection, tenant_id, inference_id)
    if stream_id is not None:
        stream = decode_stream(read_stream(connection, tenant_id, stream_id))
    return Explanation(
        inference_id=str(inference_id),
        task=request["task"],
        status=request["status"],
        cache_hit=request["cache_hit"],
        cached_from=None if request["cached_from"] is None else str(request["cached_from"]),
        principal_id=request["principal_id"],
        requested_at=request["requested_at"],
        started_at=request["started_at"],
        finished_at=request["finished_at"],
        duration_ms=request["duration_ms"],
        error=request["error"],
        output=request["output"],
        confidence=request["confidence"],
        usage_units=_text(request["usage_units"]),
        attributes=dict(request["attributes"] or {}),
        rating=request["rating"],
        feedback=request["feedback"],
        rated_at=request["rated_at"],
        inputs=used["input"],
        model=_model(connection, request["model_atom_id"]),
        steps=read_steps(connection, tenant_id, inference_id),
        outputs=used["output"],
        stream=stream,
        cost=_cost(connection, tenant_id, inference_id, request["status"]),
    )


def _stream_of(connection: Connection, tenant_id: str, inference_id: uuid.UUID) -> uuid.UUID | None:
    g = generation_streams.c
    found: uuid.UUID | None = connection.execute(
        select(g.stream_id)
        .where(g.tenant_id == tenant_id, g.inference_id == inference_id)
        .order_by(g.created_at.desc(), g.stream_id)
        .limit(1)
    ).scalar_one_or_none()
    return found


def _atoms(
    connection: Connection, tenant_id: str, inference_id: uuid.UUID
) -> dict[str, list[InferenceAtom]]:
    i, a = inference_atoms.c, atoms.c
    rows = connection.execute(
        select(i.role, i.ordinal, i.name, i.atom_id, i.holding_id, a.size_bytes)
        .select_from(inference_atoms.outerjoin(atoms, a.atom_id == i.atom_id))
        .where(i.tenant_id == tenant_id, i.inference_id == inference_id)
        .order_by(i.role, i.ordinal)
    ).all()
    found: dict[str, list[InferenceAtom]] = {"input": [], "output": []}
    for row in rows:
        atom = bytes(row.atom_id)
        sources = [] if row.role != "input" else _sources(connection, tenant_id, atom)
        found[row.role].append(
            InferenceAtom(
                name=row.name,
                ordinal=row.ordinal,
                atom_id=atom.hex(),
                holding_id=None if row.holding_id is None else str(row.holding_id),
                size_bytes=row.size_bytes,
                sources=sources,
            )
        )
    return found


def _sources(connection: Connection, tenant_id: str, atom: bytes) -> list[InputSource]:
    return [
        InputSource(
            holding_id=str(h.holding_id),
            atom_id=bytes(h.atom_id).hex(),
            source_uri=h.source_uri,
            source_type=h.source_type,
            job_id=None if h.job_id is None else str(h.job_id),
            created_at=h.created_at,
        )
        for h in holders_of(connection, tenant_id, atom)
    ]


def _model(connection: Connection, model_atom_id: bytes | None) -> ModelSummary | None:
    if model_atom_id is None:
        return None
    m = models.c
    row = connection.execute(
        select(m.format, m.architecture, m.tensor_count, m.parameter_count, m.dtypes).where(
            m.atom_id == model_atom_id
        )
    ).first()
    if row is None:  # the model was collected since: its id is all that is left
        return ModelSummary(bytes(model_atom_id).hex(), "", None, 0, 0, {})
    dtypes: Mapping[str, Any] = row.dtypes or {}
    return ModelSummary(
        model_id=bytes(model_atom_id).hex(),
        format=row.format,
        architecture=row.architecture,
        tensor_count=row.tensor_count,
        parameter_count=row.parameter_count,
        dtypes={str(k): int(v) for k, v in dtypes.items()},
    )


def _cost(connection: Connection, tenant_id: str, inference_id: uuid.UUID, status: str) -> Cost:
    b = billing_usage_ledger.c
    row = connection.execute(
        select(
            b.operation,
            b.units,
            b.multiplier,
            b.total_dcu,
            b.unit_price,
            b.total_cost,
            b.recorded_at,
        ).where(
            b.tenant_id == tenant_id, b.event_id == inference_ledger_key(tenant_id, inference_id)
        )
    ).first()
    if row is None:
        state: BillingState = "not yet billed" if status == "completed" else "not billed"
        return Cost(state, None, None, None, None, None, None, None)
    return Cost(
        state="billed",
        operation=row.operation,
        units=_text(row.units),
        multiplier=_text(row.multiplier),
        total_dcu=_text(row.total_dcu),
        unit_price=_text(row.unit_price),
        total_cost=_text(row.total_cost),
        recorded_at=row.recorded_at,
    )
