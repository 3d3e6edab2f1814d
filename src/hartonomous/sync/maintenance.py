"""`graph status`, `graph repair` and `graph replay` (docs/sync.md, "Commands"): all idempotent.

Repair is the seed's missing `usp_SyncAtomGraphFromRelations`, done for every captured table:
it reads the source rows in key order, a batch at a time, runs them through the same handlers
as the worker (as inserts, without billing) and upserts the SQL graph; then it deletes, a batch
at a time, the graph rows it did not produce (their source rows are gone). Replay re-projects
the SQL graph into Neo4j, a batch at a time, and marks what it projected; a full replay then
deletes, a batch at a time, the nodes and relationships of our vocabulary that the SQL graph
does not have, so that Neo4j ends equal to it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg.types.json import set_json_loads
from sqlalchemy import JSON, LargeBinary

from hartonomous.db.tables import metadata
from hartonomous.json_types import exact_loads
from hartonomous.messaging.resilience import is_transient
from hartonomous.sync.events import SyncEvent
from hartonomous.sync.graph import LABELS, RELATIONSHIPS, GraphBatch, GraphChange, Label, NodeRef
from hartonomous.sync.handlers import handler_for
from hartonomous.sync.lookups import Lookups
from hartonomous.sync.projector import Neo4jProjector, Row, edge_row, node_row
from hartonomous.sync.rows import InvalidEventError
from hartonomous.sync.rows import Row as DataRow
from hartonomous.sync.sql_graph import lock_projection, write_batch

Connection = psycopg.Connection[Any]
DEFAULT_BATCH_SIZE = 1000
_ERRORS_KEPT = 10
log = structlog.get_logger(__name__)

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
    ("inference_requests", ("tenant_id", "inference_id"), "true"),
    ("inference_atoms", ("tenant_id", "inference_id", "role", "ordinal"), "true"),
    ("generation_streams", ("tenant_id", "stream_id"), "true"),
)


@dataclass
class RepairReport:
    rows: dict[str, int]
    nodes: int
    edges: int
    invalid: dict[str, int]
    removed_nodes: int = 0
    removed_edges: int = 0
    # Rows that could not be decoded (a value Python's JSON cannot read) or whose graph write
    # failed (a database error), per table, and the first few errors.
    failed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def failed_row(self, table: str, key: tuple[Any, ...], exc: BaseException) -> None:
        self.failed[table] = self.failed.get(table, 0) + 1
        error = f"{table} {_key_text(key)}: {type(exc).__name__}: {str(exc).strip()}"
        log.warning("graph_repair_row_failed", error=error)
        if len(self.errors) < _ERRORS_KEPT:
            self.errors.append(error)


def _key_text(key: tuple[Any, ...]) -> str:
    parts = [value.hex() if isinstance(value, bytes) else str(value) for value in key]
    return "(" + ", ".join(part if len(part) <= 80 else part[:77] + "..." for part in parts) + ")"


def _bytea_columns(table: str) -> list[str]:
    return [c.name for c in metadata.tables[table].columns if isinstance(c.type, LargeBinary)]


def _json_columns(table: str) -> list[str]:
    return [c.name for c in metadata.tables[table].columns if isinstance(c.type, JSON)]


def as_cdc_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """A `to_jsonb` row in the CES consumer's shape (bytea as bare hex)."""
    for column in _bytea_columns(table):
        value = row.get(column)
        if isinstance(value, str):
            row[column] = value.removeprefix("\\x")
    return row


# What a repair produced, by id: rows of the graph tables not in here are orphans. Temporary
# tables of the repair's session, so concurrent repairs (other sessions) do not mix.
_PRODUCED = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS repair_produced_nodes (node_id text PRIMARY KEY)",
    "CREATE TEMPORARY TABLE IF NOT EXISTS repair_produced_edges (edge_id text PRIMARY KEY)",
    "TRUNCATE repair_produced_nodes, repair_produced_edges",
)


def repair(connection: Connection, batch_size: int = DEFAULT_BATCH_SIZE) -> RepairReport:
    """Rebuild `graph_nodes` / `graph_edges` from the source tables (one transaction a batch),
    then delete the graph rows whose source rows are gone."""
    set_json_loads(exact_loads, connection)  # source jsonb numbers reach the graph exact
    report = RepairReport(rows={}, nodes=0, edges=0, invalid={})
    lookups = Lookups(connection)
    for statement in _PRODUCED:
        connection.execute(statement)
    started = connection.execute("SELECT now()").fetchone()
    assert started is not None
    for table, keys, where in REPAIR_SOURCES:
        key_list = ", ".join(f"t.{k}" for k in keys)
        last: tuple[Any, ...] | None = None
        seen = 0
        while True:
            after = "" if last is None else f" AND ({key_list}) > ({', '.join(['%s'] * len(keys))})"
            # As text, decoded row by row below: one undecodable row must not fail its batch.
            rows = connection.execute(
                f"SELECT {key_list}, to_jsonb(t)::text FROM {table} t WHERE {where}{after} "
                f"ORDER BY {key_list} LIMIT {int(batch_size)}",
                last or (),
            ).fetchall()
            if not rows:
                break
            changes: list[tuple[tuple[Any, ...], GraphChange]] = []
            for row in rows:
                key = tuple(row[: len(keys)])
                try:
                    data = exact_loads(row[-1])
                except (ValueError, RecursionError) as exc:  # e.g. jsonb nested 3,000 deep
                    report.failed_row(table, key, exc)
                    _keep_undecodable(connection, table, keys, key, lookups)
                    continue
                try:
                    changes.append((key, repair_change(table, data, lookups)))
                except InvalidEventError:
                    report.invalid[table] = report.invalid.get(table, 0) + 1
                except psycopg.Error as exc:
                    if is_transient(exc):
                        raise
                    report.failed_row(table, key, exc)
            _write_repaired(connection, table, changes, report)
            seen += len(rows)
            last = tuple(rows[-1][: len(keys)])
        report.rows[table] = seen
    # Rows written after the repair started come from events newer than its reads: not orphans.
    report.removed_edges = _remove_orphans(
        connection,
        "graph_edges",
        "edge_id",
        produced="repair_produced_edges",
        started=started[0],
        size=batch_size,
    )
    report.removed_nodes = _remove_orphans(
        connection,
        "graph_nodes",
        "node_id",
        produced="repair_produced_nodes",
        started=started[0],
        size=batch_size,
    )
    connection.execute("DROP TABLE repair_produced_nodes, repair_produced_edges")
    return report


def _keep_undecodable(
    connection: Connection,
    table: str,
    keys: tuple[str, ...],
    key: tuple[Any, ...],
    lookups: Lookups,
) -> None:
    """Keep what the graph holds for a row that could not be decoded from being removed as an
    orphan: its source row exists. Its ids come from the row without its json/jsonb columns."""
    columns = _json_columns(table)
    match = " AND ".join(f"t.{k} = %s" for k in keys)
    row = connection.execute(
        f"SELECT to_jsonb(t) - %s::text[] FROM {table} t WHERE {match}", (columns, *key)
    ).fetchone()
    if row is None:
        return
    try:
        change = repair_change(table, dict(row[0]), lookups)
    except (InvalidEventError, ValueError, RecursionError):
        return  # nothing to keep that can be named: it was reported as failed already
    _keep(connection, change)


def _keep(connection: Connection, change: GraphChange) -> None:
    """Record a change's ids as produced without writing it: not orphans."""
    kept = GraphBatch()
    kept.add(change)
    _record_produced(connection, kept)


def repair_change(table: str, row: dict[str, Any], lookups: Lookups) -> GraphChange:
    """The graph change a source row (a `to_jsonb` dict) makes, as its insert event would.

    Raises ``InvalidEventError`` as the handler does for a row it cannot project.
    """
    data = as_cdc_row(table, row)
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
    return handler_for(table).apply(event, lookups).change


def _write_repaired(
    connection: Connection,
    table: str,
    changes: list[tuple[tuple[Any, ...], GraphChange]],
    report: RepairReport,
) -> None:
    """Write a batch's changes in one transaction; if that fails, one row at a time, so a row
    the graph cannot take is reported (`failed`) and every other row is still repaired."""
    try:
        _write_changes(connection, [change for _, change in changes], report)
        return
    except psycopg.Error as exc:
        if is_transient(exc):
            raise
    for key, change in changes:
        try:
            _write_changes(connection, [change], report)
        except psycopg.Error as exc:
            if is_transient(exc):
                raise
            report.failed_row(table, key, exc)
            # Its source row exists: what the graph holds for it is not an orphan.
            _keep(connection, change)


def _write_changes(
    connection: Connection, changes: list[GraphChange], report: RepairReport
) -> None:
    batch = GraphBatch()
    for change in changes:
        batch.add(change)
    with connection.transaction():
        write_batch(connection, batch, projected=False)
        _record_produced(connection, batch)
    report.nodes += batch.node_count
    report.edges += batch.edge_count


def _record_produced(connection: Connection, batch: GraphBatch) -> None:
    nodes = [node_id for segment in batch.segments for node_id in segment.nodes]
    edges = [edge_id for segment in batch.segments for edge_id in segment.edges]
    connection.execute(
        "INSERT INTO repair_produced_nodes SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
        (nodes,),
    )
    connection.execute(
        "INSERT INTO repair_produced_edges SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
        (edges,),
    )


def _remove_orphans(
    connection: Connection, table: str, key: str, *, produced: str, started: datetime, size: int
) -> int:
    """Delete, in key order a batch at a time, rows older than the repair it did not produce."""
    last = ""
    removed = 0
    while True:
        ids = [
            row[0]
            for row in connection.execute(
                f"SELECT {key} FROM {table} WHERE {key} > %s ORDER BY {key} LIMIT {int(size)}",
                (last,),
            ).fetchall()
        ]
        if not ids:
            return removed
        deleted = connection.execute(
            f"DELETE FROM {table} g WHERE g.{key} = ANY(%s) AND g.updated_at < %s "
            f"AND NOT EXISTS (SELECT 1 FROM {produced} p WHERE p.{key} = g.{key})",
            (ids, started),
        )
        removed += deleted.rowcount
        last = ids[-1]


# What `_merge_page` reads of graph_nodes / graph_edges, in its order.
_PROJECTED_COLUMNS = {
    "graph_nodes": "node_id, label, tenant_id, properties",
    "graph_edges": "edge_id, relationship, from_node_id, from_label, to_node_id, to_label, "
    "tenant_id, properties",
}


@dataclass
class ReplayReport:
    nodes: int
    edges: int
    removed_nodes: int = 0
    removed_edges: int = 0


def replay(
    connection: Connection,
    projector: Neo4jProjector,
    *,
    since: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ReplayReport:
    """Re-project SQL graph rows (changed since `since`, or all) into Neo4j, nodes first; a
    full replay (no `since`) then deletes from Neo4j what the SQL graph does not have."""
    set_json_loads(exact_loads, connection)  # jsonb numbers reach Neo4j exact
    projector.ensure_schema()
    nodes = _replay_table(
        connection, projector, table="graph_nodes", key="node_id", since=since, size=batch_size
    )
    edges = _replay_table(
        connection, projector, table="graph_edges", key="edge_id", since=since, size=batch_size
    )
    report = ReplayReport(nodes, edges)
    if since is None:
        report.removed_edges = sum(
            _sweep_edges(connection, projector, relationship, batch_size)
            for relationship in RELATIONSHIPS
        )
        report.removed_nodes = sum(
            _sweep_nodes(connection, projector, label, batch_size) for label in LABELS
        )
    return report


def _sweep_edges(
    connection: Connection, projector: Neo4jProjector, relationship: str, size: int
) -> int:
    """Delete relationships of a type whose id, or whose endpoints, the SQL graph lacks."""
    last = ""
    removed = 0
    while True:
        page = projector.edge_ends(relationship, last, size)
        if not page:
            return removed
        with connection.transaction():
            lock_projection(connection, exclusive=True)
            gone = [
                row[0]
                for row in connection.execute(
                    "SELECT u.id FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(id, f, t) "
                    "WHERE NOT EXISTS (SELECT 1 FROM graph_edges e WHERE e.edge_id = u.id "
                    "AND e.relationship = %s AND e.from_node_id = u.f AND e.to_node_id = u.t)",
                    (
                        [p[0] for p in page],
                        [p[1] for p in page],
                        [p[2] for p in page],
                        relationship,
                    ),
                ).fetchall()
            ]
            if gone:
                projector.delete((), gone)
        removed += len(gone)
        last = page[-1][0]


def _sweep_nodes(connection: Connection, projector: Neo4jProjector, label: Label, size: int) -> int:
    """Delete nodes of a label that are neither a SQL graph node nor an edge's endpoint."""
    last = ""
    removed = 0
    while True:
        page = projector.node_ids(label, last, size)
        if not page:
            return removed
        with connection.transaction():
            lock_projection(connection, exclusive=True)
            gone = [
                row[0]
                for row in connection.execute(
                    "SELECT u.id FROM unnest(%(ids)s::text[]) AS u(id) WHERE NOT EXISTS "
                    "(SELECT 1 FROM graph_nodes g WHERE g.node_id = u.id AND g.label = %(label)s) "
                    "AND NOT EXISTS (SELECT 1 FROM graph_edges e WHERE e.from_node_id = u.id "
                    "AND e.from_label = %(label)s) AND NOT EXISTS (SELECT 1 FROM graph_edges e "
                    "WHERE e.to_node_id = u.id AND e.to_label = %(label)s)",
                    {"ids": page, "label": label},
                ).fetchall()
            ]
            if gone:
                projector.delete([NodeRef(node_id, label) for node_id in gone], ())
        removed += len(gone)
        last = page[-1]


def _replay_table(
    connection: Connection,
    projector: Neo4jProjector,
    *,
    table: str,
    key: str,
    since: datetime | None,
    size: int,
) -> int:
    columns = _PROJECTED_COLUMNS[table]
    last = ""
    total = 0
    while True:
        with connection.transaction():
            lock_projection(connection, exclusive=True)
            rows = connection.execute(
                f"SELECT {columns} FROM {table} WHERE {key} > %s "
                "AND (%s::timestamptz IS NULL OR updated_at >= %s) "
                f"ORDER BY {key} LIMIT {int(size)}",
                (last, since, since),
            ).fetchall()
            if rows:
                _merge_page(connection, projector, table, key, rows)
        if not rows:
            return total
        total += len(rows)
        last = rows[-1][0]


def merge_rows_by_id(
    connection: Connection, projector: Neo4jProjector, table: str, key: str, ids: list[str]
) -> None:
    """Project the SQL graph rows of ``table`` (graph_nodes / graph_edges) with these ids into
    Neo4j and mark them projected; the caller holds the projection lock."""
    columns = _PROJECTED_COLUMNS[table]
    rows = connection.execute(
        f"SELECT {columns} FROM {table} WHERE {key} = ANY(%s) ORDER BY {key}", (ids,)
    ).fetchall()
    if rows:
        _merge_page(connection, projector, table, key, rows)


def _merge_page(
    connection: Connection,
    projector: Neo4jProjector,
    table: str,
    key: str,
    rows: list[tuple[Any, ...]],
) -> None:
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
    connection.execute(
        f"UPDATE {table} SET projected_at = now() WHERE {key} = ANY(%s)",
        ([row[0] for row in rows],),
    )


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
