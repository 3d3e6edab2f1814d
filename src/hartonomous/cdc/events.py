"""Row changes → CloudEvents (docs/cdc.md, "Events").

The id is a UUIDv5 of the database, the commit's WAL position, the change's index within its
transaction, the table and the row key: replaying the same WAL yields the same ids. Extension
attributes sit at the top level of the structured JSON, so `body->>'table'` works in SQL.
Values arrive exact (docs/cdc.md, "Exact values"): json/jsonb numbers and finite numerics
become `Decimal`s that the broker writes verbatim.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hartonomous.cdc.pgoutput import UNCHANGED, Begin, Change, Relation, lsn_to_text
from hartonomous.json_types import exact_loads
from hartonomous.storable import TOO_DEEP

EVENT_NAMESPACE = uuid.UUID("6f1c2d4e-8a3b-5c7d-9e0f-a1b2c3d4e5f6")
EVENT_TYPE_PREFIX = "io.hartonomous.cdc"
# broker_messages.conversation_id is varchar(512); a longer one (a long key with escapes)
# becomes `<table>:sha256:<hex of the key>`, still one conversation per row.
CONVERSATION_ID_MAX = 512

_BOOL, _INT2, _INT4, _INT8, _OID = 16, 21, 23, 20, 26
_FLOAT4, _FLOAT8 = 700, 701
_NUMERIC = 1700
_JSON, _JSONB = 114, 3802
_BYTEA = 17
_TIMESTAMP, _TIMESTAMPTZ = 1114, 1184
_OFFSET_HOURS_ONLY = re.compile(r"[+-]\d{2}$")


def _float(text: str) -> Any:
    number = float(text)
    # NaN and infinities are not JSON numbers; keep PostgreSQL's spelling.
    return number if math.isfinite(number) else text


def _numeric(text: str) -> Any:
    # Exact as a JSON number; NaN and ±Infinity (valid numerics, not JSON numbers) stay text.
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    return number if number.is_finite() else text


def _timestamp(text: str) -> str:
    iso = text.replace(" ", "T", 1)
    return iso + ":00" if _OFFSET_HOURS_ONLY.search(iso) else iso


def _json(text: str) -> Any:
    try:
        return exact_loads(text)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


_CONVERTERS: dict[int, Callable[[str], Any]] = {
    _BOOL: lambda text: text == "t",
    _INT2: int,
    _INT4: int,
    _INT8: int,
    _OID: int,
    _FLOAT4: _float,
    _FLOAT8: _float,
    _NUMERIC: _numeric,
    _JSON: _json,
    _JSONB: _json,
    _BYTEA: lambda text: text.removeprefix("\\x"),
    _TIMESTAMP: _timestamp,
    _TIMESTAMPTZ: _timestamp,
}
_CONVERTERS_BY_NAME: dict[str, Callable[[str], Any]] = {"vector": _json}


def json_value(text: str, type_oid: int, type_name: str | None) -> Any:
    """A column's text representation as JSON data (numbers exact: `Decimal`, never a float
    that would round them). Raises `ValueError` when the text is not what the type promises."""
    converter = _CONVERTERS.get(type_oid) or _CONVERTERS_BY_NAME.get(type_name or "")
    return text if converter is None else converter(text)


@dataclass(frozen=True)
class RowEvent:
    """A structured-mode CloudEvent (`body`, data may hold `Decimal`s) and its conversation."""

    body: dict[str, Any]
    conversation_id: str


def _rfc3339(moment: datetime) -> str:
    text = moment.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def conversation_id(table: str, key_text: str) -> str:
    """`<table>:<key as JSON>`, or a digest of the key when that exceeds the column."""
    conversation = f"{table}:{key_text}"
    if len(conversation) <= CONVERSATION_ID_MAX:
        return conversation
    return f"{table}:sha256:{hashlib.sha256(key_text.encode()).hexdigest()}"


def table_name(relation: Relation) -> str:
    if relation.namespace == "public":
        return relation.name
    return f"{relation.namespace}.{relation.name}"


def to_event(
    change: Change,
    *,
    relation: Relation,
    type_names: dict[int, str] | None,
    begin: Begin,
    index: int,
    database: str,
) -> RowEvent:
    """The CloudEvent of one change (`begin` is its transaction's Begin: commit LSN and time).

    `type_names` None keeps every value as PostgreSQL's text: the same event (same id) for a
    dead letter when a value cannot be converted. Raises `ValueError` (or another exception)
    when a value cannot be converted; the CES consumer then sets the change aside.
    """
    return _event(
        change,
        relation=relation,
        begin=begin,
        index=index,
        database=database,
        row=_row(relation, change, type_names),
    )


def _event(
    change: Change,
    *,
    relation: Relation,
    begin: Begin,
    index: int,
    database: str,
    row: dict[str, Any],
) -> RowEvent:
    table = table_name(relation)
    lsn = lsn_to_text(begin.final_lsn)
    key = [row.get(column.name) for column in relation.columns if column.is_key]
    key_text = json.dumps(key, separators=(",", ":"), default=str)
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid5(EVENT_NAMESPACE, f"{database}/{lsn}/{index}/{table}/{key_text}")),
        "source": f"/hartonomous/postgresql/{database}",
        "type": f"{EVENT_TYPE_PREFIX}.{table}.{change.kind}",
        "subject": f"{table}/{','.join(str(part) for part in key)}",
        "time": _rfc3339(begin.commit_time),
        "datacontenttype": "application/json",
        "table": table,
        "operation": change.kind,
        "lsn": lsn,
    }
    for column, extension in (("tenant_id", "tenantid"), ("principal_id", "principalid")):
        if row.get(column) is not None:
            attributes[extension] = str(row[column])
    return RowEvent({**attributes, "data": row}, conversation_id(table, key_text))


def _row(relation: Relation, change: Change, type_names: dict[int, str] | None) -> dict[str, Any]:
    """The row as JSON data; `type_names` None keeps every value as PostgreSQL's text."""
    values = change.new if change.new is not None else change.old
    assert values is not None
    key_only = change.kind == "delete" and change.old_is_key_only
    row: dict[str, Any] = {}
    for column, value in zip(relation.columns, values, strict=True):
        if value is UNCHANGED or (key_only and not column.is_key):
            continue
        if value is None or type_names is None:
            row[column.name] = None if value is None else str(value)
        else:
            try:
                row[column.name] = json_value(
                    str(value), column.type_oid, type_names.get(column.type_oid)
                )
            except ValueError as exc:
                raise ValueError(f"column {column.name}: {exc}") from exc
    return row
