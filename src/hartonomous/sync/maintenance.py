"""`graph status`, `graph repair` and `graph replay` (design §8): all idempotent.

Repair is the seed's missing `usp_SyncAtomGraphFromRelations`, done for every captured table:
it reads the source rows in key order, a batch at a time, runs them through the same handlers
as the worker (as inserts, without billing) and upserts the SQL graph. Replay re-projects the
SQL graph into Neo4j, a batch at a time, and marks what it projected.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import LargeBinary

from hartonomous.db.tables import metadata
from hartonomous.sync.graph import GraphBatch
from hartonomous.sync.handlers import SyncEvent, handler_for
from hartonomous.sync.lookups import Lookups
from hartonomous.sync.projector import Neo4jProjector, Row, edge_row, node_row
from hartonomous.sync.rows import InvalidEventError
from hartonomous.sync.rows import Row as DataRow
from hartonomous.sync.sql_graph import write_batch

Connection = psycopg.Connection[Any]
DEFAULT_BATCH_SIZE = 1000

# Source tables in dependency order, with their keys; bare chunks never become nodes.
REPAIR_SOURCES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("tenants", ("tenant_id",), "true"),
    ("principals", ("tenant_id", "principal_id"), "true"),
    ("ingestion_jobs", ("tenant_id", "job_id"), "true"),
    (
        "atoms",
        ("atom_id",),
        "NOT (t.modality = 'binary' AND t.subtype IN ('chunk', 'span'))",
    ),
    ("atom_relations", ("from_atom_id", "relation_type", "ordinal"), "true"),
    ("holdings", ("tenant_id", "holding_id"), "true"),
    ("ingestion_job_atoms", ("tenant_id", "job_id", "ordinal"), "true"),
    ("models", ("atom_id",), "true"),
    ("model_tensors", ("model_atom_id", "ordinal"), "true"),
)


@dataclass
class RepairReport:
    rows: dict[str, int]
    nodes: int
    edges: int
    invalid: dict[str, int]


def _bytea_columns(table: str) -> list[str]:
    return [c.name for c in metadata.tables[table].columns if isinstance(c.type, LargeBinary)]


def _as_cdc_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """A `to_jsonb` row in the CES consumer's shape (bytea as bare hex)."""
    for column in _bytea_columns(table):
        value = row.get(column)
        if isinstance(value, str):
            row[column] = value.removeprefix("\\x")
    return row


def repair(connection: Connection, batch_size: int = DEFAULT_BATCH_SIZE) -> RepairReport:
    """Rebuild `graph_nodes` / `graph_edges` from the source tables (one transaction a batch)."""
    report = RepairReport(rows={}, nodes=0, edges=0, invalid={})
    lookups = Lookups(connection)
    for table, keys, where in REPAIR_SOURCES:
        key_list = ", ".join(f"t.{k}" for k in keys)
        last: tuple[Any, ...] | None = None
        seen = 0
        while True:
            after = "" if last is None else f" AND ({key_list}) > ({', '.join(['%s'] * len(keys))})"
            rows = connection.execute(
                f"SELECT {key_list}, to_jsonb(t) FROM {table} t WHERE {where}{after} "
                f"ORDER BY {key_list} LIMIT {int(batch_size)}",
                last or (),
            ).fetchall()
            if not rows:
                break
            batch = GraphBatch()
            with connection.transaction():
                for row in rows:
                    data = _as_cdc_row(table, dict(row[-1]))
                    event = SyncEvent(
                        event_id="",
                        event_type=f"repair.{table}",
                        table=table,
                        operation="insert",
                        row=DataRow(f"{table}.insert", data),
                        extensions={},
                        tenant_id=str(data.get("tenant_id") or ""),
                        principal_id=str(data.get("principal_id") or ""),
                    )
                    try:
                        outcome = handler_for(table).apply(event, lookups)
                    except InvalidEventError:
                        report.invalid[table] = report.invalid.get(table, 0) + 1
                        continue
                    batch.add(outcome.change)
                write_batch(connection, batch, projected=False)
            report.nodes += batch.node_count
            report.edges += batch.edge_count
            seen += len(rows)
            last = tuple(rows[-1][: len(keys)])
        report.rows[table] = seen
    return report


@dataclass
class ReplayReport:
    nodes: int
    edges: int


def replay(
    connection: Connection,
    projector: Neo4jProjector,
    *,
    since: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ReplayReport:
    """Re-project SQL graph rows (changed since `since`, or all) into Neo4j, nodes first."""
    projector.ensure_schema()
    nodes = _replay_table(
        connection, projector, table="graph_nodes", key="node_id", since=since, size=batch_size
    )
    edges = _replay_table(
        connection, projector, table="graph_edges", key="edge_id", since=since, size=batch_size
    )
    return ReplayReport(nodes, edges)


def _replay_table(
    connection: Connection,
    projector: Neo4jProjector,
    *,
    table: str,
    key: str,
    since: datetime | None,
    size: int,
) -> int:
    columns = (
        "node_id, label, tenant_id, properties"
        if table == "graph_nodes"
        else "edge_id, relationship, from_node_id, from_label, to_node_id, to_label, "
        "tenant_id, properties"
    )
    last = ""
    total = 0
    while True:
        rows = connection.execute(
            f"SELECT {columns} FROM {table} WHERE {key} > %s "
            "AND (%s::timestamptz IS NULL OR updated_at >= %s) "
            f"ORDER BY {key} LIMIT {int(size)}",
            (last, since, since),
        ).fetchall()
        if not rows:
            return total
        node_rows: dict[str, list[Row]] = defaultdict(list)
        edge_rows: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
        for row in rows:
            if table == "graph_nodes":
                node_rows[row[1]].append(node_row(row[0], row[2], row[3]))
            else:
                edge_rows[(row[1], row[3], row[5])].append(
                    edge_row(row[0], row[2], row[4], row[6], row[7])
                )
        projector.merge_rows(node_rows, edge_rows)
        ids = [row[0] for row in rows]
        connection.execute(
            f"UPDATE {table} SET projected_at = now() WHERE {key} = ANY(%s)",
            (ids,),
        )
        total += len(rows)
        last = ids[-1]


def status(connection: Connection, queue_name: str) -> dict[str, Any]:
    """Sizes, projection lag, queue backlog, ledger size and the sync counters."""
    graph: dict[str, Any] = {}
    for table in ("graph_nodes", "graph_edges"):
        total, unprojected, oldest = connection.execute(
            f"SELECT count(*), count(*) FILTER (WHERE projected_at IS NULL "
            "OR projected_at < updated_at), "
            "extract(epoch FROM now() - min(updated_at) FILTER (WHERE projected_at IS NULL "
            f"OR projected_at < updated_at)) FROM {table}"
        ).fetchone() or (0, 0, None)
        graph[table] = {
            "rows": int(total),
            "unprojected": int(unprojected),
            "oldest_unprojected_seconds": None if oldest is None else round(float(oldest), 3),
        }
    backlog, oldest_message = connection.execute(
        "SELECT count(*), extract(epoch FROM now() - min(enqueued_at)) FROM broker_messages "
        "WHERE queue_name = %s",
        (queue_name,),
    ).fetchone() or (0, None)
    ledger = connection.execute("SELECT count(*) FROM billing_usage_ledger").fetchone()
    counters = dict(
        connection.execute("SELECT counter, count FROM sync_counters ORDER BY counter").fetchall()
    )
    return {
        **graph,
        "queue": {
            "pending_events": int(backlog),
            "oldest_event_seconds": None
            if oldest_message is None
            else round(float(oldest_message), 3),
        },
        "ledger_rows": int(ledger[0]) if ledger else 0,
        "counters": {str(k): int(v) for k, v in counters.items()},
    }
