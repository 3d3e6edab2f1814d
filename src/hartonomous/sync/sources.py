"""Deletes win: a batch writes no node whose source row is gone (nor an edge touching one).

Events of different rows are ordered only by their own row (one conversation per row), so an
event that was delayed (throttled, retried) can be applied after the delete of a row it
mentions: a holding insert synced after its tenant's delete would re-create `tenant:T` as a
placeholder, for good. So before writing, the worker looks up the source row of every node a
batch upserts or uses as an edge endpoint, and drops the upserts of those that no longer exist.

The lookup locks the rows it finds `FOR KEY SHARE` until the batch commits: a concurrent
DELETE of one of them waits, so its delete event is produced, and applied, after this batch.
Nodes without a source table (labels no captured table produces) are never dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from hartonomous.sync.graph import GraphBatch, Label, NodeRef

Connection = psycopg.Connection[Any]


@dataclass(frozen=True)
class _Source:
    table: str
    columns: tuple[str, ...]
    array_types: tuple[str, ...]
    # Rebuilds the node id from the source row `s` (as graph.<label>_ref builds it).
    node_id: str
    # Converts each key part of a NodeRef to the parameter of its array.
    convert: tuple[Callable[[Any], Any], ...]


def _hex(value: Any) -> bytes:
    return bytes.fromhex(str(value))


_SOURCES: dict[Label, _Source] = {
    "Tenant": _Source("tenants", ("tenant_id",), ("text",), "'tenant:' || s.tenant_id", (str,)),
    "Principal": _Source(
        "principals",
        ("tenant_id", "principal_id"),
        ("text", "text"),
        "'principal:' || s.tenant_id || ':' || s.principal_id",
        (str, str),
    ),
    "IngestionJob": _Source(
        "ingestion_jobs",
        ("tenant_id", "job_id"),
        ("text", "uuid"),
        "'job:' || s.tenant_id || ':' || s.job_id::text",
        (str, str),
    ),
    "Inference": _Source(
        "inference_requests",
        ("tenant_id", "inference_id"),
        ("text", "uuid"),
        "'inference:' || s.tenant_id || ':' || s.inference_id::text",
        (str, str),
    ),
    "GenerationStream": _Source(
        "generation_streams",
        ("tenant_id", "stream_id"),
        ("text", "uuid"),
        "'stream:' || s.tenant_id || ':' || s.stream_id::text",
        (str, str),
    ),
    "Atom": _Source(
        "atoms", ("atom_id",), ("bytea",), "'atom:' || encode(s.atom_id, 'hex')", (_hex,)
    ),
    "Model": _Source(
        "models", ("atom_id",), ("bytea",), "'model:' || encode(s.atom_id, 'hex')", (_hex,)
    ),
    "Tensor": _Source(
        "model_tensors",
        ("model_atom_id", "ordinal"),
        ("bytea", "int"),
        "'tensor:' || encode(s.model_atom_id, 'hex') || ':' || s.ordinal",
        (_hex, int),
    ),
}


def _existing(connection: Connection, source: _Source, refs: Sequence[NodeRef]) -> set[str]:
    names = [f"k{n}" for n in range(len(source.columns))]
    arrays = ", ".join(f"%s::{kind}[]" for kind in source.array_types)
    join = " AND ".join(f"s.{c} = u.{k}" for c, k in zip(source.columns, names, strict=True))
    order = ", ".join(f"s.{c}" for c in source.columns)
    parameters = [[convert(ref.key[n]) for ref in refs] for n, convert in enumerate(source.convert)]
    rows = connection.execute(
        f"SELECT {source.node_id} FROM {source.table} s "
        f"JOIN unnest({arrays}) AS u({', '.join(names)}) ON {join} "
        f"ORDER BY {order} FOR KEY SHARE OF s",
        parameters,
    ).fetchall()
    return {str(row[0]) for row in rows}


def drop_deleted_sources(connection: Connection, batch: GraphBatch) -> dict[Label, int]:
    """Drop from `batch` the upserts of nodes whose source rows are gone (and their edges);
    returns how many nodes were dropped, per label. Runs in the batch's transaction."""
    by_label: dict[Label, list[NodeRef]] = defaultdict(list)
    for ref in batch.upserted_refs():
        if ref.label in _SOURCES and ref.key:
            by_label[ref.label].append(ref)
    gone: set[str] = set()
    dropped: dict[Label, int] = {}
    for label, refs in sorted(by_label.items()):
        existing = _existing(connection, _SOURCES[label], refs)
        missing = {ref.node_id for ref in refs} - existing
        if missing:
            gone |= missing
            dropped[label] = len(missing)
    if gone:
        batch.drop(gone)
    return dropped
