"""Writing an inference's results: steps, input and output atoms, the stream and the row.

Shared by the worker's completion and failure (``jobs``) and by a cache hit at submission
(``submission``): each calls these inside one transaction of its own (docs/inference.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, Table, func, insert, select, update
from sqlalchemy.dialects import postgresql

from hartonomous.db.tables import holdings, inference_requests, inference_steps
from hartonomous.inference.blobs import holding_row, source_uri, store_blob
from hartonomous.inference.canonical import canonical_request
from hartonomous.inference.channels import DONE_CHANNEL, notify
from hartonomous.inference.streams import BUILTIN_TEXT_MODEL, StreamParts, store_stream
from hartonomous.inference.tasks import InputAtom, OutputFile, StepRecord
from hartonomous.json_types import JsonValue
from hartonomous.storable import storable_object, storable_text

__all__ = [
    "ERROR_CHARACTERS",
    "RequestRow",
    "failure_parts",
    "input_atom_rows",
    "recordset",
    "recordset_insert",
    "step_rows",
    "store_output_files",
    "stream_model",
    "stream_parts",
    "usage",
    "write_failure",
    "write_steps",
]

_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]
ERROR_CHARACTERS = 4000
"""A failure's reason is cut to this many characters (the whole of it is in the log)."""


@dataclass(frozen=True)
class RequestRow:
    """The columns of an `inference_requests` row that results are written from."""

    tenant_id: str
    inference_id: uuid.UUID
    task: str
    model_atom_id: bytes | None
    input: dict[str, JsonValue]
    attributes: dict[str, JsonValue]
    attempts: int

    @classmethod
    def of(cls, row: Row[Any]) -> RequestRow:
        return cls(
            tenant_id=row.tenant_id,
            inference_id=row.inference_id,
            task=row.task,
            model_atom_id=None if row.model_atom_id is None else bytes(row.model_atom_id),
            input=dict(row.input),
            attributes=dict(row.attributes),
            attempts=row.attempts,
        )

    @property
    def model_hex(self) -> str | None:
        return None if self.model_atom_id is None else self.model_atom_id.hex()

    def request_bytes(self) -> bytes:
        return canonical_request(self.task, self.model_hex, self.input)


def stream_model(model_atom_id: bytes | None) -> str:
    """The stream's model: the model's atom hex, or the built-in text model's name."""
    return BUILTIN_TEXT_MODEL if model_atom_id is None else model_atom_id.hex()


def step_rows(row: RequestRow, steps: Sequence[StepRecord]) -> list[dict[str, Any]]:
    """The `inference_steps` rows of ``steps``, numbered from 1."""
    return [
        {
            "tenant_id": row.tenant_id,
            "inference_id": row.inference_id,
            "step_number": number,
            "operation": step.operation,
            "model_atom_id": step.model_atom_id,
            "query_text": None if step.query_text is None else storable_text(step.query_text),
            "index_used": step.index_used,
            "rows_examined": step.rows_examined,
            "rows_returned": step.rows_returned,
            "duration_ms": step.duration_ms,
            "cache_used": step.cache_used,
            "detail": storable_object(dict(step.detail)),
        }
        for number, step in enumerate(steps, start=1)
    ]


def write_steps(connection: Connection, row: RequestRow, steps: Sequence[StepRecord]) -> None:
    if steps:
        connection.execute(insert(inference_steps), step_rows(row, steps))


def input_atom_rows(
    connection: Connection, row: RequestRow, atoms: Sequence[InputAtom]
) -> list[dict[str, Any]]:
    """`inference_atoms` rows (role input); an input the request stored gets its holding
    (one statement when there are inputs, none otherwise)."""
    if not atoms:
        return []
    prefix = source_uri(row.inference_id, "input", "")
    held = {
        bytes(found.atom_id): found.holding_id
        for found in connection.execute(
            select(holdings.c.atom_id, holdings.c.holding_id).where(
                holdings.c.tenant_id == row.tenant_id,
                holdings.c.source_uri.startswith(prefix, autoescape=True),
            )
        )
    }
    return [
        {
            "tenant_id": row.tenant_id,
            "inference_id": row.inference_id,
            "role": "input",
            "ordinal": ordinal,
            "atom_id": atom.atom_id,
            "name": storable_text(atom.name),
            "holding_id": held.get(atom.atom_id),
        }
        for ordinal, atom in enumerate(atoms)
    ]


def store_output_files(
    connection: Connection, row: RequestRow, files: Sequence[OutputFile]
) -> tuple[list[dict[str, object]], list[dict[str, Any]]]:
    """Store each output file as an atom; the `holdings` rows that hold them for the tenant
    (``inference:<id>/output/<name>``) and the `inference_atoms` rows (role output) that
    record them, to be inserted together (their ``holding_id`` found by ``source_uri``)."""
    holding_rows: list[dict[str, object]] = []
    atom_rows: list[dict[str, Any]] = []
    for ordinal, file in enumerate(files):
        atom_id = store_blob(connection, file.data, file.media_type)
        holding = holding_row(
            row.tenant_id,
            row.inference_id,
            role="output",
            name=file.name,
            atom_id=atom_id,
            data=file.data,
            media_type=file.media_type,
        )
        holding_rows.append(holding)
        atom_rows.append(
            {
                "tenant_id": row.tenant_id,
                "inference_id": row.inference_id,
                "role": "output",
                "ordinal": ordinal,
                "atom_id": atom_id,
                "name": storable_text(file.name),
                "holding_id": None,
                "source_uri": holding["source_uri"],
            }
        )
    return holding_rows, atom_rows


def recordset_insert(
    table: Table, parameter: str, omit: Sequence[str] = (), suffix: str = ""
) -> str:
    """``INSERT INTO <table> (...) SELECT ... FROM jsonb_to_recordset(:<parameter>)``: any
    number of rows in one bound JSON array (``recordset``), so a statement inserting into
    several tables has one text whatever the row counts (prepared and cached once, where
    a multi-row VALUES list is a new statement for each count). Generated columns and those
    named in ``omit`` are left to the database (an absent field would be NULL); ``suffix``
    ends the statement (``ON CONFLICT …``, ``RETURNING …``)."""
    columns = [c for c in table.c if c.computed is None and c.name not in omit]
    names = ", ".join(column.name for column in columns)
    fields = ", ".join(
        f"{column.name} {column.type.compile(dialect=_POSTGRESQL)}" for column in columns
    )
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM "
        f"jsonb_to_recordset(CAST(:{parameter} AS jsonb)) AS r({fields}) {suffix}"
    )


def recordset(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as the JSON array ``recordset_insert`` reads: bytes as bytea's hex input
    form (``\\x...``), UUIDs as text; the database parses each field as its column's type
    (a float's shortest repr reads back as the same double)."""
    return json.dumps(list(rows), default=_json_field, allow_nan=False)


def _json_field(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a recordset field")


def stream_parts(
    row: RequestRow,
    control: Mapping[str, JsonValue],
    *,
    embedding: Sequence[float] | None = None,
    telemetry: Mapping[str, JsonValue] | None = None,
    output: Mapping[str, JsonValue] | None = None,
) -> StreamParts:
    """The stream of ``row``'s inference: its Input (the canonical request), ``control``,
    and the other segments given."""
    return StreamParts(
        inference_id=row.inference_id,
        tenant_id=row.tenant_id,
        task=row.task,
        model=stream_model(row.model_atom_id),
        request=row.request_bytes(),
        control=control,
        embedding=embedding,
        telemetry=telemetry,
        output=output,
    )


def failure_parts(row: RequestRow, reason: str, control: Mapping[str, JsonValue]) -> StreamParts:
    """A failed inference's stream: its Input and a Control segment with the error."""
    return stream_parts(row, {**control, "status": "failed", "error": reason})


def write_failure(
    connection: Connection, row: RequestRow, reason: str, control: Mapping[str, JsonValue]
) -> None:
    """Mark the row failed with ``reason`` and store its failure stream; nothing else but
    the notice to callers waiting on it."""
    reason = storable_text(reason)[:ERROR_CHARACTERS]
    stream_id = store_stream(connection, failure_parts(row, reason, control))
    connection.execute(
        update(inference_requests)
        .where(
            inference_requests.c.tenant_id == row.tenant_id,
            inference_requests.c.inference_id == row.inference_id,
        )
        .values(
            status="failed",
            error=reason,
            stream_id=stream_id,
            finished_at=func.now(),
            lease_expires_at=None,
        )
    )
    notify(connection, DONE_CHANNEL, row.inference_id)


def usage(value: Decimal) -> Decimal:
    """Units as stored (NUMERIC(18,6)): exact to the micro-unit, rounded half-even beyond."""
    return value.quantize(Decimal("0.000001"))
