"""`graph catch-up`: find what the SQL graph and the ledger lack relative to the source tables
and re-emit exactly that (docs/sync.md, "Catch-up"). Idempotent: a second run finds nothing.

For every source row (of `maintenance.REPAIR_SOURCES`, changed at or after ``since`` when
given) the handler's graph change is computed as `graph repair` does, and compared with the
SQL graph: a node or edge that is missing, or whose stored properties do not contain the
computed ones, is a gap. A billable row (the handler's `billable_operation`) is a ledger gap
when no ledger row bills it: none with its metering key, none whose metadata `subject` names
it, none with the event id of the graph rows it produced.

- a ledger gap is re-emitted as a CloudEvent on the configured transport (the broker or Kafka;
  id: UUIDv5 of `catch-up` and the row's subject), unless that event is still unsettled
  there: the sync worker then writes the ledger row and the graph, through policy, throttle
  and meter like any event;
- a graph-only gap is written directly (as `graph repair` writes), unbilled.

Ledger gaps are settled last, after capture has caught up: a row committed moments ago may
simply not be billed *yet*, its change still in the WAL or its event in the queue. Billing it
again from here would bill it twice (under the catch-up event's id and the captured event's).
So the candidates are collected first; then, when a CES consumer is running on the slot
(``CaptureWait``; it holds the slot's consumer lock), catch-up waits until the consumer
reports everything committed before that moment enqueued (`cdc_checkpoints.caught_up_at`, or
its slot confirmed at or past the WAL insert position of that moment: an idle consumer writes
no checkpoint, docs/operations.md), and re-checks each candidate: still unbilled and no event
of that row (same `conversation_id`) unsettled on the transport (`Transport.unsettled`: the
queue's rows, or on Kafka the records behind the consumer group's committed offsets). Only
those are re-emitted. With no consumer running, the rows whose changes are still in the slot
refuse the run (`CaptureBehindError`); a restore has just re-created the slot
(docs/operations.md, "Restore").
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads

from hartonomous.cdc.events import conversation_id
from hartonomous.cdc.replication import slot_holder, uncaptured_changes
from hartonomous.db.tables import metadata
from hartonomous.errors import UnavailableError
from hartonomous.json_types import exact_dumps, exact_loads
from hartonomous.messaging.broker import OutgoingMessage
from hartonomous.messaging.transport import Transport
from hartonomous.sync.events import SyncEvent
from hartonomous.sync.graph import GraphBatch, GraphChange
from hartonomous.sync.handlers import handler_for
from hartonomous.sync.lookups import Lookups
from hartonomous.sync.maintenance import (
    REPAIR_SOURCES,
    as_cdc_row,
    merge_rows_by_id,
    repair_change,
)
from hartonomous.sync.projector import Neo4jProjector
from hartonomous.sync.rows import InvalidEventError
from hartonomous.sync.rows import Row as DataRow
from hartonomous.sync.sql_graph import lock_projection, write_batch

Connection = psycopg.Connection[Any]
CATCH_UP_NAMESPACE = uuid.UUID("0d6e6a52-3c1f-5b8e-9a47-2f1c7b9d4e30")
EVENT_SOURCE = "/hartonomous/catch-up"
DEFAULT_BATCH_SIZE = 500


class CaptureBehindError(UnavailableError):
    """The running CES consumer did not catch up in time: ledger gaps were not settled."""

    code = "capture-behind"


@dataclass(frozen=True)
class CaptureWait:
    """The CES consumer catch-up waits for before it settles ledger gaps (module docstring):
    its slot, its checkpoint row, and how long to wait (seconds) before raising
    ``CaptureBehindError``."""

    slot_name: str
    consumer_name: str
    timeout_seconds: float = 120.0
    # The consumer's publication (`[cdc] publication_name`): with no consumer running, the
    # slot is peeked through it for changes not captured yet.
    publication_name: str = "hartonomous_ces"


@dataclass
class CatchUpReport:
    """Per source table: rows read, rows whose graph lacked something, rows the ledger lacked."""

    rows: dict[str, int] = field(default_factory=dict)
    graph_gaps: dict[str, int] = field(default_factory=dict)
    ledger_gaps: dict[str, int] = field(default_factory=dict)
    # Graph rows written directly; events put on the broker; gaps whose event was queued already.
    nodes_written: int = 0
    edges_written: int = 0
    events_emitted: int = 0
    events_already_queued: int = 0

    def totals(self) -> dict[str, int]:
        return {
            "graph_gaps": sum(self.graph_gaps.values()),
            "ledger_gaps": sum(self.ledger_gaps.values()),
            "nodes_written": self.nodes_written,
            "edges_written": self.edges_written,
            "events_emitted": self.events_emitted,
            "events_already_queued": self.events_already_queued,
        }


@dataclass(frozen=True)
class _Source:
    table: str
    key: tuple[Any, ...]
    data: dict[str, Any]
    change: GraphChange

    @property
    def subject(self) -> str:
        return f"{self.table}/{','.join(str(part) for part in self.key)}"

    @property
    def event_id(self) -> str:
        return str(uuid.uuid5(CATCH_UP_NAMESPACE, self.subject))


def _changed_column(table: str) -> str | None:
    columns = metadata.tables[table].columns
    return next((name for name in ("updated_at", "created_at") if name in columns), None)


def catch_up(
    connection: Connection,
    transport: Transport,
    *,
    since: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    capture: CaptureWait | None = None,
) -> CatchUpReport:
    """Find and re-emit what the SQL graph and the ledger lack (module docstring).

    ``since`` limits the rows read to those whose `updated_at` (else `created_at`) is at or
    after it; tables with neither column are read whole. ``capture``: wait for that CES
    consumer, when it runs, before settling ledger gaps; raises ``CaptureBehindError`` (graph
    gaps written, no event emitted) when it does not catch up within its timeout.
    """
    set_json_loads(exact_loads, connection)
    report = CatchUpReport()
    lookups = Lookups(connection)
    candidates: list[_Source] = []
    for table, keys, where in REPAIR_SOURCES:
        key_list = ", ".join(f"t.{k}" for k in keys)
        changed = _changed_column(table)
        window = f" AND t.{changed} >= %s" if since is not None and changed else ""
        last: tuple[Any, ...] | None = None
        seen = 0
        while True:
            after = "" if last is None else f" AND ({key_list}) > ({', '.join(['%s'] * len(keys))})"
            params: tuple[Any, ...] = ((since,) if window else ()) + (last or ())
            rows = connection.execute(
                f"SELECT {key_list}, to_jsonb(t)::text FROM {table} t WHERE {where}{window}"
                f"{after} ORDER BY {key_list} LIMIT {int(batch_size)}",
                params,
            ).fetchall()
            if not rows:
                break
            sources: list[_Source] = []
            for row in rows:
                try:
                    data = as_cdc_row(table, exact_loads(row[-1]))
                    change = repair_change(table, dict(data), lookups)
                except (InvalidEventError, ValueError, RecursionError):
                    continue  # `graph repair` reports such rows; nothing to re-emit for them
                sources.append(_Source(table, tuple(row[: len(keys)]), data, change))
            candidates += _catch_up_batch(connection, lookups, sources, report)
            seen += len(rows)
            last = tuple(rows[-1][: len(keys)])
        report.rows[table] = seen
    if candidates:
        if capture is not None:
            _wait_for_capture(connection, capture)
        _settle_ledger_gaps(connection, transport, lookups, candidates, report)
    return report


def _wait_for_capture(connection: Connection, capture: CaptureWait) -> None:
    """Return once the running consumer has enqueued every change committed before now."""
    row = connection.execute(
        "SELECT clock_timestamp(), pg_current_wal_insert_lsn()::text"
    ).fetchone()
    assert row is not None
    asked_at, asked_lsn = row
    # A running consumer (`up`, `ces-consumer`) holds the slot's consumer lock. With none,
    # changes still in the slot would be captured (and billed under their own event ids) once
    # a consumer runs again: re-emitting their rows now would bill them twice.
    if slot_holder(connection, capture.slot_name) is None:
        pending = uncaptured_changes(
            connection, capture.slot_name, capture.publication_name, upto_lsn=asked_lsn
        )
        if pending == 0:
            return
        if pending is not None:
            behind = CaptureBehindError(
                f"{pending} row change(s) committed before {asked_at.isoformat()} are still in "
                f"the change-capture slot {capture.slot_name} and no CES consumer is running: "
                "billing them from here would bill them twice, so no event was re-emitted; "
                "catch up once change capture has taken them"
            )
            # The CLI says it; an HTTP answer does not.
            behind.cli_hint = (
                "start `hartonomous up` (or `hartonomous ces-consumer`), then run "
                "`hartonomous graph catch-up` again once `hartonomous status` shows change "
                "capture OK"
            )
            raise behind
        # The slot is in use: a consumer is starting; wait for it as for a running one.
    deadline = time.monotonic() + capture.timeout_seconds
    while True:
        # The consumer advances its slot only after the step that enqueued up to there.
        caught_up = connection.execute(
            "SELECT caught_up_at >= %s OR EXISTS (SELECT FROM pg_replication_slots "
            "WHERE slot_name = %s AND confirmed_flush_lsn >= %s::pg_lsn) "
            "FROM cdc_checkpoints WHERE consumer_name = %s",
            (asked_at, capture.slot_name, asked_lsn, capture.consumer_name),
        ).fetchone()
        if caught_up is not None and caught_up[0]:
            return
        if time.monotonic() > deadline:
            raise CaptureBehindError(
                f"change capture (slot {capture.slot_name}) has not caught up with the changes "
                f"committed before {asked_at.isoformat()} within {capture.timeout_seconds:.0f} s: "
                "rows not billed yet may still be on their way, so no event was re-emitted; "
                "run `graph catch-up` again once `status` shows change capture OK"
            )
        time.sleep(0.2)


def _settle_ledger_gaps(
    connection: Connection,
    transport: Transport,
    lookups: Lookups,
    candidates: list[_Source],
    report: CatchUpReport,
) -> None:
    """Re-emit the candidates that are still unbilled and have no event of their row
    unsettled on the transport (a catch-up event of an earlier run still there counts as
    already queued)."""
    # The transport first, then the ledger: a worker settles a message only once the
    # transaction that bills it committed, so a row whose event was settled after this read
    # is billed by the next.
    unsettled = transport.unsettled(connection, sorted({_conversation(s) for s in candidates}))
    in_flight = {message.conversation_id for message in unsettled}
    queued = {
        str(message.body.get("id")) for message in unsettled if isinstance(message.body, dict)
    }
    gaps = [
        s
        for s in candidates
        if (s.event_id in queued or _conversation(s) not in in_flight)
        and _ledger_gap(connection, lookups, s)
    ]
    queued &= {s.event_id for s in gaps}
    for source in gaps:
        report.ledger_gaps[source.table] = report.ledger_gaps.get(source.table, 0) + 1
    report.events_already_queued += len(queued)
    fresh = [s for s in gaps if s.event_id not in queued]
    if fresh:
        # Kafka acknowledges before the (empty) transaction commits; the broker's rows are
        # visible once it does.
        with connection.transaction():
            transport.send_batch(connection, [_message(s) for s in fresh])
    report.events_emitted += len(fresh)


def _catch_up_batch(
    connection: Connection,
    lookups: Lookups,
    sources: list[_Source],
    report: CatchUpReport,
) -> list[_Source]:
    """Write the batch's graph-only gaps; return its ledger-gap candidates (settled later)."""
    graph_gaps = _graph_gaps(connection, sources)
    candidates: list[_Source] = []
    to_write: list[_Source] = []
    for source in sources:
        if _ledger_gap(connection, lookups, source):
            candidates.append(source)
        elif source.subject in graph_gaps:
            to_write.append(source)
        if source.subject in graph_gaps:
            report.graph_gaps[source.table] = report.graph_gaps.get(source.table, 0) + 1
    if to_write:
        batch = GraphBatch()
        for source in to_write:
            batch.add(source.change)
        with connection.transaction():
            write_batch(connection, batch, projected=False)
        report.nodes_written += batch.node_count
        report.edges_written += batch.edge_count
    return candidates


def _graph_gaps(connection: Connection, sources: list[_Source]) -> set[str]:
    """Subjects of the sources whose nodes or edges are missing or hold other properties."""
    nodes: list[tuple[int, str, str]] = []
    edges: list[tuple[int, str, str]] = []
    for position, source in enumerate(sources):
        for node in source.change.nodes:
            nodes.append((position, node.ref.node_id, exact_dumps(node.properties, default=str)))
        for item in source.change.edges:
            edges.append((position, item.edge_id, exact_dumps(item.properties, default=str)))
    gaps: set[str] = set()
    checks = (("graph_nodes", "node_id", nodes), ("graph_edges", "edge_id", edges))
    for table, key, wanted in checks:
        if not wanted:
            continue
        # Stored properties may hold more (merged from earlier events), never less.
        rows = connection.execute(
            f"SELECT DISTINCT u.owner FROM unnest(%s::int[], %s::text[], %s::jsonb[]) "
            f"AS u(owner, id, p) WHERE NOT EXISTS (SELECT 1 FROM {table} g "
            f"WHERE g.{key} = u.id AND g.properties @> u.p)",
            ([w[0] for w in wanted], [w[1] for w in wanted], [w[2] for w in wanted]),
        ).fetchall()
        gaps.update(sources[int(row[0])].subject for row in rows)
    return gaps


def _event(source: _Source) -> SyncEvent:
    data = source.data
    operation = "insert"
    return SyncEvent(
        event_id=source.event_id,
        event_type=f"io.hartonomous.cdc.{source.table}.{operation}",
        table=source.table,
        operation=operation,
        row=DataRow(f"{source.table}.{operation}", data),
        extensions={},
        tenant_id=str(data.get("tenant_id") or ""),
        principal_id=str(data.get("principal_id") or ""),
        subject=source.subject,
    )


def _ledger_gap(connection: Connection, lookups: Lookups, source: _Source) -> bool:
    """True when the row is billable and no ledger row bills it."""
    event = _event(source)
    handler = handler_for(source.table)
    if handler.billable_operation(event) is None:
        return False
    key = handler.metering(event, lookups).idempotency_key
    produced = [n.ref.node_id for n in source.change.nodes]
    produced_edges = [e.edge_id for e in source.change.edges]
    row = connection.execute(
        "SELECT EXISTS (SELECT 1 FROM billing_usage_ledger l WHERE l.event_id = ANY(%(keys)s) "
        "OR l.metadata->>'subject' = %(subject)s OR l.event_id IN ("
        "SELECT source_event_id FROM graph_nodes WHERE node_id = ANY(%(nodes)s) "
        "UNION SELECT source_event_id FROM graph_edges WHERE edge_id = ANY(%(edges)s)))",
        {
            "keys": [key, source.event_id],
            "subject": source.subject,
            "nodes": produced,
            "edges": produced_edges,
        },
    ).fetchone()
    return not (row is not None and row[0])


def _conversation(source: _Source) -> str:
    return conversation_id(
        source.table, json.dumps(list(source.key), separators=(",", ":"), default=str)
    )


def _message(source: _Source) -> OutgoingMessage:
    event = _event(source)
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.event_id,
        "source": EVENT_SOURCE,
        "type": event.event_type,
        "subject": source.subject,
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "table": source.table,
        "operation": event.operation,
        "data": source.data,
    }
    if event.tenant_id:
        body["tenantid"] = event.tenant_id
    if event.principal_id:
        body["principalid"] = event.principal_id
    return OutgoingMessage(body, conversation_id=_conversation(source))


@dataclass
class Neo4jCatchUp:
    """SQL graph rows read, and those Neo4j lacked (now merged into it)."""

    nodes_checked: int = 0
    edges_checked: int = 0
    nodes_missing: int = 0
    edges_missing: int = 0


def catch_up_neo4j(
    connection: Connection,
    projector: Neo4jProjector,
    *,
    since: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Neo4jCatchUp:
    """Merge into Neo4j the SQL graph rows (changed at or after ``since``) that it lacks, e.g.
    after Neo4j was restored from an older dump or emptied; rows it has are left alone."""
    set_json_loads(exact_loads, connection)
    projector.ensure_schema()
    report = Neo4jCatchUp()
    for table, key, kind in (
        ("graph_nodes", "node_id", "label"),
        ("graph_edges", "edge_id", "relationship"),
    ):
        last = ""
        while True:
            rows = connection.execute(
                f"SELECT {key}, {kind} FROM {table} WHERE {key} > %s "
                "AND (%s::timestamptz IS NULL OR updated_at >= %s) "
                f"ORDER BY {key} LIMIT {int(batch_size)}",
                (last, since, since),
            ).fetchall()
            if not rows:
                break
            by_kind: dict[str, list[str]] = {}
            for row_id, row_kind in rows:
                by_kind.setdefault(str(row_kind), []).append(str(row_id))
            missing: list[str] = []
            for name, ids in by_kind.items():
                present = (
                    projector.present_node_ids(name, ids)
                    if table == "graph_nodes"
                    else projector.present_edge_ids(name, ids)
                )
                missing += [i for i in ids if i not in present]
            if missing:
                with connection.transaction():
                    lock_projection(connection, exclusive=True)
                    merge_rows_by_id(connection, projector, table, key, missing)
            if table == "graph_nodes":
                report.nodes_checked += len(rows)
                report.nodes_missing += len(missing)
            else:
                report.edges_checked += len(rows)
                report.edges_missing += len(missing)
            last = str(rows[-1][0])
    return report
