"""FIXTURE HELPER: inference rows written with plain SQL in the shape the job worker writes
them (src/hartonomous/db/tables/inference.py's comments, docs/inference.md), for the tests of
lineage, explain, streams and billing until they can run on the worker's own rows.

A completed request: status 'completed', output, usage_units, duration_ms, stream_id,
finished_at; `inference_atoms` rows of role input / output; output atoms held by the tenant
through holdings with source_uri `inference:<id>/output/<name>`; one `generation_streams` row
(a real AtomicStream: Input, Control, Telemetry, Output); `inference_steps`. Like the worker,
it inserts the request `pending` and completes it in a later transaction, so change capture
sees an insert and an update.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import psycopg

from hartonomous.provenance import AtomicStream, SegmentKind

STARTED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class InputRef:
    name: str
    atom_id: bytes
    holding_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Step:
    operation: str
    duration_ms: float
    rows_examined: int | None = None
    rows_returned: int | None = None
    index_used: str | None = None


@dataclass
class InferenceRows:
    tenant_id: str
    inference_id: uuid.UUID
    stream_id: uuid.UUID | None
    stream: bytes | None
    output_atoms: dict[str, bytes] = field(default_factory=dict)


def _stream(
    stream_id: uuid.UUID,
    *,
    tenant_id: str,
    task: str,
    model: str,
    request: dict[str, Any],
    outputs: Sequence[tuple[str, bytes]],
    steps: Sequence[Step],
    error: str | None = None,
) -> bytes:
    at = STARTED
    # As the job worker lays it out: scope the tenant, metadata the inference's task.
    stream = AtomicStream.create(
        stream_id, created=at, scope=tenant_id, model=model, metadata=json.dumps({"task": task})
    ).with_segment(
        SegmentKind.Input,
        json.dumps(request).encode(),
        timestamp=at,
        content_type="application/json",
    )
    if error is not None:
        return stream.with_segment(
            SegmentKind.Control,
            error.encode(),
            timestamp=at + timedelta(milliseconds=1),
            content_type="text/plain; charset=utf-8",
            metadata='{"error":true}',
        ).to_bytes()
    stream = stream.with_segment(
        SegmentKind.Control,
        b"{}",
        timestamp=at + timedelta(milliseconds=1),
        content_type="application/json",
        metadata='{"parameters":true}',
    ).with_segment(
        SegmentKind.Telemetry,
        json.dumps(
            [{"operation": s.operation, "duration_ms": s.duration_ms} for s in steps]
        ).encode(),
        timestamp=at + timedelta(milliseconds=2),
        content_type="application/json",
    )
    for name, data in outputs:
        stream = stream.with_segment(
            SegmentKind.Output,
            data,
            timestamp=at + timedelta(milliseconds=3),
            content_type="application/octet-stream",
            metadata=json.dumps({"name": name}),
        )
    return stream.to_bytes()


def insert_inference(
    conn: psycopg.Connection[Any],
    tenant_id: str,
    *,
    principal_id: str | None = None,
    task: str = "onnx_run",
    model_atom_id: bytes | None = None,
    inputs: Sequence[InputRef] = (),
    outputs: Sequence[tuple[str, bytes]] = (),
    steps: Sequence[Step] = (Step("onnx_session.run", 2.5, 1, 1),),
    usage_units: Decimal = Decimal("0.004200"),
    attributes: dict[str, Any] | None = None,
    duration_ms: float = 4.25,
    status: str = "completed",
    cache_hit: bool = False,
    model_name: str = "model",
) -> InferenceRows:
    """Write one inference as the job worker would (autocommit connection); `status` is
    'completed' or 'failed'. A cache hit is inserted completed in one transaction."""
    inference_id = uuid.uuid4()
    request = {"inputs": {i.name: i.atom_id.hex() for i in inputs}}
    input_hash = hashlib.sha256(json.dumps([task, request, str(inference_id)]).encode()).digest()
    attrs = json.dumps(attributes or {})
    first = "completed" if cache_hit else "pending"
    finish = partial(
        _complete,
        conn,
        tenant_id=tenant_id,
        inference_id=inference_id,
        task=task,
        model_name=model_name,
        request=request,
        inputs=inputs,
        outputs=outputs,
        steps=steps,
        usage_units=usage_units,
        duration_ms=duration_ms,
        status=status,
    )
    with conn.transaction():
        conn.execute(
            "INSERT INTO inference_requests (tenant_id, inference_id, principal_id, task, "
            "model_atom_id, input, input_hash, attributes, status, cache_hit) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                tenant_id,
                inference_id,
                principal_id,
                task,
                model_atom_id,
                json.dumps(request),
                input_hash,
                attrs,
                first,
                cache_hit,
            ),
        )
        if cache_hit:
            finish()
    if cache_hit:
        return _rows(conn, tenant_id, inference_id)
    with conn.transaction():
        conn.execute(
            "UPDATE inference_requests SET status = 'in_progress', attempts = 1, "
            "started_at = %s WHERE tenant_id = %s AND inference_id = %s",
            (STARTED, tenant_id, inference_id),
        )
    with conn.transaction():
        finish()
    return _rows(conn, tenant_id, inference_id)


def _complete(
    conn: psycopg.Connection[Any],
    *,
    tenant_id: str,
    inference_id: uuid.UUID,
    task: str,
    model_name: str,
    request: dict[str, Any],
    inputs: Sequence[InputRef],
    outputs: Sequence[tuple[str, bytes]],
    steps: Sequence[Step],
    usage_units: Decimal,
    duration_ms: float,
    status: str,
) -> None:
    failed = status == "failed"
    stream_id = uuid.uuid4()
    error = "input X: expected shape [3, 2], given [2, 2]" if failed else None
    stream = _stream(
        stream_id,
        tenant_id=tenant_id,
        task=task,
        model=model_name,
        request=request,
        outputs=[] if failed else outputs,
        steps=steps,
        error=error,
    )
    for ordinal, item in enumerate(inputs):
        conn.execute(
            "INSERT INTO inference_atoms (tenant_id, inference_id, role, ordinal, atom_id, name, "
            "holding_id) VALUES (%s, %s, 'input', %s, %s, %s, %s)",
            (tenant_id, inference_id, ordinal, item.atom_id, item.name, item.holding_id),
        )
    conn.execute(
        "INSERT INTO generation_streams (tenant_id, stream_id, inference_id, scope, model, "
        "stream) VALUES (%s, %s, %s, %s, %s, %s)",
        (tenant_id, stream_id, inference_id, tenant_id, model_name, stream),
    )
    if failed:
        conn.execute(
            "UPDATE inference_requests SET status = 'failed', error = %s, stream_id = %s, "
            "finished_at = %s WHERE tenant_id = %s AND inference_id = %s",
            (error, stream_id, STARTED + timedelta(milliseconds=5), tenant_id, inference_id),
        )
        return
    output_json: dict[str, str] = {}
    for ordinal, (name, data) in enumerate(outputs):
        atom = hashlib.sha256(data).digest()
        output_json[name] = atom.hex()
        conn.execute(
            "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes) "
            "VALUES (%s, 'leaf', 'binary', '', %s) ON CONFLICT DO NOTHING",
            (atom, len(data)),
        )
        conn.execute(
            "INSERT INTO atom_payloads (atom_id, content) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (atom, data),
        )
        holding = conn.execute(
            "INSERT INTO holdings (tenant_id, atom_id, source_uri, source_type) "
            "VALUES (%s, %s, %s, 'inference') RETURNING holding_id",
            (tenant_id, atom, f"inference:{inference_id}/output/{name}"),
        ).fetchone()
        assert holding is not None
        conn.execute(
            "INSERT INTO inference_atoms (tenant_id, inference_id, role, ordinal, atom_id, name, "
            "holding_id) VALUES (%s, %s, 'output', %s, %s, %s, %s)",
            (tenant_id, inference_id, ordinal, atom, name, holding[0]),
        )
    for number, step in enumerate(steps, start=1):
        conn.execute(
            "INSERT INTO inference_steps (tenant_id, inference_id, step_number, operation, "
            "model_atom_id, index_used, rows_examined, rows_returned, duration_ms) "
            "SELECT %s, %s, %s, %s, model_atom_id, %s, %s, %s, %s FROM inference_requests "
            "WHERE tenant_id = %s AND inference_id = %s",
            (
                tenant_id,
                inference_id,
                number,
                step.operation,
                step.index_used,
                step.rows_examined,
                step.rows_returned,
                step.duration_ms,
                tenant_id,
                inference_id,
            ),
        )
    conn.execute(
        "UPDATE inference_requests SET status = 'completed', output = %s, usage_units = %s, "
        "duration_ms = %s, stream_id = %s, started_at = coalesce(started_at, %s), "
        "finished_at = %s WHERE tenant_id = %s AND inference_id = %s",
        (
            json.dumps({"outputs": output_json}),
            usage_units,
            duration_ms,
            stream_id,
            STARTED,
            STARTED + timedelta(milliseconds=5),
            tenant_id,
            inference_id,
        ),
    )


def _rows(conn: psycopg.Connection[Any], tenant_id: str, inference_id: uuid.UUID) -> InferenceRows:
    row = conn.execute(
        "SELECT r.stream_id, s.stream FROM inference_requests r LEFT JOIN generation_streams s "
        "ON s.tenant_id = r.tenant_id AND s.stream_id = r.stream_id "
        "WHERE r.tenant_id = %s AND r.inference_id = %s",
        (tenant_id, inference_id),
    ).fetchone()
    assert row is not None
    outputs = conn.execute(
        "SELECT name, atom_id FROM inference_atoms WHERE tenant_id = %s AND inference_id = %s "
        "AND role = 'output' ORDER BY ordinal",
        (tenant_id, inference_id),
    ).fetchall()
    return InferenceRows(
        tenant_id,
        inference_id,
        row[0],
        None if row[1] is None else bytes(row[1]),
        {str(name): bytes(atom) for name, atom in outputs},
    )


def rate(conn: psycopg.Connection[Any], rows: InferenceRows, rating: int, feedback: str) -> None:
    """Feedback, as `POST /v1/inference/{id}/feedback` records it."""
    conn.execute(
        "UPDATE inference_requests SET rating = %s, feedback = %s, rated_at = now() "
        "WHERE tenant_id = %s AND inference_id = %s",
        (rating, feedback, rows.tenant_id, rows.inference_id),
    )
