"""Row changes → CloudEvents (design §6).

The id is a UUIDv5 of the database, the commit's WAL position, the change's index within its
transaction, the table and the row key: replaying the same WAL yields the same ids. Extension
attributes sit at the top level of the structured JSON, so `body->>'table'` works in SQL.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from hartonomous.cdc.pgoutput import UNCHANGED, Change, Commit, Relation, Value, lsn_to_text

EVENT_NAMESPACE = uuid.UUID("6f1c2d4e-8a3b-5c7d-9e0f-a1b2c3d4e5f6")
EVENT_TYPE_PREFIX = "io.hartonomous.cdc"

_BOOL, _INT2, _INT4, _INT8, _OID = 16, 21, 23, 20, 26
_FLOAT4, _FLOAT8 = 700, 701
_JSON, _JSONB = 114, 3802
_BYTEA = 17
_TIMESTAMP, _TIMESTAMPTZ = 1114, 1184
_OFFSET_HOURS_ONLY = re.compile(r"[+-]\d{2}$")


def _float(text: str) -> Any:
    number = float(text)
    # NaN and infinities are not JSON numbers; keep PostgreSQL's spelling.
    return number if math.isfinite(number) else text


def _timestamp(text: str) -> str:
    iso = text.replace(" ", "T", 1)
    return iso + ":00" if _OFFSET_HOURS_ONLY.search(iso) else iso


_CONVERTERS: dict[int, Callable[[str], Any]] = {
    _BOOL: lambda text: text == "t",
    _INT2: int,
    _INT4: int,
    _INT8: int,
    _OID: int,
    _FLOAT4: _float,
    _FLOAT8: _float,
    _JSON: json.loads,
    _JSONB: json.loads,
    _BYTEA: lambda text: text.removeprefix("\\x"),
    _TIMESTAMP: _timestamp,
    _TIMESTAMPTZ: _timestamp,
}
_CONVERTERS_BY_NAME: dict[str, Callable[[str], Any]] = {"vector": json.loads}


def json_value(text: str, type_oid: int, type_name: str | None) -> Any:
    """A column's text representation as plain JSON (numeric stays a string: no float loss)."""
    converter = _CONVERTERS.get(type_oid) or _CONVERTERS_BY_NAME.get(type_name or "")
    return text if converter is None else converter(text)


@dataclass(frozen=True)
class RowEvent:
    event: CloudEvent
    conversation_id: str


def table_name(relation: Relation) -> str:
    if relation.namespace == "public":
        return relation.name
    return f"{relation.namespace}.{relation.name}"


def to_event(
    change: Change,
    *,
    relation: Relation,
    type_names: dict[int, str],
    commit: Commit,
    index: int,
    database: str,
) -> RowEvent:
    values = change.new if change.new is not None else change.old
    assert values is not None
    row = _row(
        relation,
        values,
        key_only=change.kind == "delete" and change.old_is_key_only,
        type_names=type_names,
    )
    key = [row.get(column.name) for column in relation.columns if column.is_key]
    table = table_name(relation)
    lsn = lsn_to_text(commit.end_lsn)
    key_text = json.dumps(key, separators=(",", ":"), default=str)
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid5(EVENT_NAMESPACE, f"{database}/{lsn}/{index}/{table}/{key_text}")),
        "source": f"/hartonomous/postgresql/{database}",
        "type": f"{EVENT_TYPE_PREFIX}.{table}.{change.kind}",
        "subject": f"{table}/{','.join(str(part) for part in key)}",
        "time": commit.commit_time,
        "datacontenttype": "application/json",
        "table": table,
        "operation": change.kind,
        "lsn": lsn,
    }
    for column, extension in (("tenant_id", "tenantid"), ("principal_id", "principalid")):
        if row.get(column) is not None:
            attributes[extension] = str(row[column])
    return RowEvent(CloudEvent(attributes, row), f"{table}:{key_text}")


def _row(
    relation: Relation, values: tuple[Value, ...], key_only: bool, type_names: dict[int, str]
) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, value in zip(relation.columns, values, strict=True):
        if value is UNCHANGED or (key_only and not column.is_key):
            continue
        row[column.name] = (
            None
            if value is None
            else json_value(str(value), column.type_oid, type_names.get(column.type_oid))
        )
    return row
