"""The Neo4j 5 projection: batched `UNWIND … MERGE` on stable ids (docs/sync.md).

One Neo4j transaction per batch; nodes grouped by label and edges by (type, endpoint labels),
since labels and relationship types cannot be query parameters. Endpoints are merged by id, so
an edge may arrive before its nodes. Every node label has a uniqueness constraint on `node_id`
and every relationship type one on `edge_id`, created at start: each row of a batch is then a
unique-index seek. (With a plain index on `edge_id` the planner answered the relationship
`MERGE` with a scan of every relationship of the type, per row: quadratic in the graph size.)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from neo4j import Driver, GraphDatabase, ManagedTransaction
from neo4j.exceptions import ServiceUnavailable, SessionExpired, TransientError

from hartonomous.config.sections import Neo4jSettings
from hartonomous.json_types import JsonValue, exact_dumps
from hartonomous.sync.graph import (
    LABELS,
    RELATIONSHIPS,
    GraphBatch,
    GraphEdge,
    GraphNode,
    GraphSegment,
    NodeRef,
)

log = structlog.get_logger(__name__)
Row = dict[str, Any]


def is_neo4j_transient(exc: BaseException) -> bool:
    """Unreachable, restarting or busy: worth a retry, and what the Neo4j breaker counts."""
    return isinstance(exc, ServiceUnavailable | SessionExpired | TransientError | OSError)


_INT64 = range(-(2**63), 2**63)


def _number(value: int | float | Decimal) -> int | float | str:
    """A number as Neo4j can hold it exactly: int64, a float that reads back as the same
    number, or else its exact decimal text (docs/sync.md, "Exact values")."""
    if isinstance(value, int):
        return value if value in _INT64 else str(value)
    if isinstance(value, float):
        return value
    as_float = float(value)
    if math.isfinite(as_float) and Decimal(repr(as_float)) == value:
        return as_float
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _property(value: JsonValue) -> Any:
    # Neo4j properties are scalars or homogeneous lists of scalars; maps become JSON text
    # (with every number exact), as do lists that mix kinds or hold numbers Neo4j cannot.
    if isinstance(value, dict):
        return exact_dumps(value, sort_keys=True)
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return value
        if all(_is_number(v) for v in value):
            numbers = [_number(v) for v in value]  # type: ignore[arg-type]
            if not any(isinstance(n, str) for n in numbers):
                return numbers
        return exact_dumps(value)
    if _is_number(value):
        return _number(value)  # type: ignore[arg-type]
    return value


def _properties(properties: dict[str, JsonValue] | Any, tenant_id: str | None) -> dict[str, Any]:
    # `SET n += props` as the SQL graph's `properties || new`: a key left out keeps the stored
    # property (a column an update did not carry), a null removes it (Neo4j has no null
    # property), and a missing tenant keeps the stored one (the SQL graph's coalesce).
    props = {key: _property(value) for key, value in properties.items()}
    if tenant_id is not None:
        props["tenant_id"] = tenant_id
    return props


def node_row(node_id: str, tenant_id: str | None, properties: dict[str, JsonValue]) -> Row:
    return {"id": node_id, "props": _properties(properties, tenant_id)}


def edge_row(
    edge_id: str, from_id: str, to_id: str, tenant_id: str | None, properties: dict[str, Any]
) -> Row:
    props = _properties(properties, tenant_id)
    return {"id": edge_id, "from": from_id, "to": to_id, "props": props}


def _check(name: str, allowed: Sequence[str]) -> str:
    # Interpolated into Cypher: only the fixed vocabulary may get there.
    if name not in allowed:
        raise ValueError(f"{name!r} is not in the graph vocabulary")
    return name


@dataclass(frozen=True)
class Neo4jServerMetrics:
    heap_used_bytes: int
    heap_max_bytes: int
    open_transactions: int
    longest_transaction_seconds: float


class Neo4jProjector:
    def __init__(self, settings: Neo4jSettings) -> None:
        self._database = settings.database or None
        self._driver: Driver = GraphDatabase.driver(
            settings.uri,
            auth=(settings.user, settings.password.get_secret_value())
            if settings.password.get_secret_value()
            else None,
            max_connection_pool_size=settings.max_connection_pool_size,
            connection_timeout=settings.connection_timeout_seconds,
            # Our retry and breaker decide; the driver's own retry loop would hide outages.
            max_transaction_retry_time=0,
        )
        self._schema_ready = False

    def close(self) -> None:
        self._driver.close()

    def server_metrics(self) -> Neo4jServerMetrics:
        """The server's JVM heap (``dbms.queryJmx`` on ``java.lang:type=Memory``) and its
        running transactions (``SHOW TRANSACTIONS``: count and the oldest one's age)."""
        heap = self._driver.execute_query(
            "CALL dbms.queryJmx('java.lang:type=Memory') YIELD attributes "
            "RETURN attributes.HeapMemoryUsage.value.properties AS heap",
            database_="system",
        ).records
        usage = heap[0]["heap"] if heap else {}
        transactions = self._driver.execute_query(
            "SHOW TRANSACTIONS YIELD elapsedTime "
            "RETURN count(*) AS open, max(elapsedTime.milliseconds) AS longest_ms",
            database_=self._database,
        ).records
        row = transactions[0] if transactions else {"open": 0, "longest_ms": None}
        return Neo4jServerMetrics(
            heap_used_bytes=int(usage.get("used", 0)),
            heap_max_bytes=int(usage.get("max", 0)),
            open_transactions=int(row["open"] or 0),
            longest_transaction_seconds=(row["longest_ms"] or 0) / 1000,
        )

    def ensure_schema(self) -> None:
        """Uniqueness constraints on `node_id` per label and `edge_id` per type (idempotent)."""
        if self._schema_ready:
            return
        statements = [
            f"CREATE CONSTRAINT graph_{label.lower()}_node_id IF NOT EXISTS "
            f"FOR (n:{label}) REQUIRE n.node_id IS UNIQUE"
            for label in LABELS
        ]
        for rel in RELATIONSHIPS:
            statements += [
                # The plain index of the first schema would block the constraint on its key.
                f"DROP INDEX graph_{rel.lower()}_edge_id IF EXISTS",
                f"CREATE CONSTRAINT graph_{rel.lower()}_edge_id_unique IF NOT EXISTS "
                f"FOR ()-[r:{rel}]-() REQUIRE r.edge_id IS UNIQUE",
            ]
        with self._driver.session(database=self._database) as session:
            for statement in statements:
                session.run(statement).consume()
        self._schema_ready = True

    def project(self, batch: GraphBatch) -> None:
        """Apply a batch in one Neo4j transaction (all or nothing)."""
        if not batch.segments:
            return
        self.ensure_schema()
        with (
            self._driver.session(database=self._database) as session,
            session.begin_transaction() as tx,
        ):
            for segment in batch.segments:
                _project_segment(tx, segment)
            tx.commit()

    def project_each(self, batch: GraphBatch) -> None:
        """One transaction and one statement per node and per edge (the benchmark's baseline)."""
        self.ensure_schema()
        with self._driver.session(database=self._database) as session:
            for segment in batch.segments:
                for node, _ in segment.nodes.values():
                    session.execute_write(_merge_nodes, node.ref.label, [_node(node)])
                for item, _ in segment.edges.values():
                    session.execute_write(_merge_edges, *_edge_key(item), [_edge(item)])

    def merge_rows(
        self, nodes: dict[str, list[Row]], edges: dict[tuple[str, str, str], list[Row]]
    ) -> None:
        """Merge pre-built rows (graph replay) in one transaction."""
        self.ensure_schema()
        with (
            self._driver.session(database=self._database) as session,
            session.begin_transaction() as tx,
        ):
            for label, rows in nodes.items():
                _merge_nodes(tx, label, rows)
            for key, rows in edges.items():
                _merge_edges(tx, *key, rows)
            tx.commit()

    def node_ids(self, label: str, after: str, limit: int) -> list[str]:
        """`node_id`s of a label after `after`, in order (the constraint's index gives it)."""
        records, _, _ = self._driver.execute_query(
            f"MATCH (n:{_check(label, LABELS)}) WHERE n.node_id > $after "
            "RETURN n.node_id AS id ORDER BY id LIMIT $limit",
            after=after,
            limit=limit,
            database_=self._database,
        )
        return [str(record["id"]) for record in records]

    def present_node_ids(self, label: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` Neo4j holds as nodes of ``label`` (`graph catch-up`)."""
        records, _, _ = self._driver.execute_query(
            f"MATCH (n:{_check(label, LABELS)}) WHERE n.node_id IN $ids RETURN n.node_id AS id",
            ids=ids,
            database_=self._database,
        )
        return {str(record["id"]) for record in records}

    def present_edge_ids(self, relationship: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` Neo4j holds as relationships of that type (`graph catch-up`)."""
        records, _, _ = self._driver.execute_query(
            f"MATCH ()-[r:{_check(relationship, RELATIONSHIPS)}]->() WHERE r.edge_id IN $ids "
            "RETURN r.edge_id AS id",
            ids=ids,
            database_=self._database,
        )
        return {str(record["id"]) for record in records}

    def edge_ends(self, relationship: str, after: str, limit: int) -> list[tuple[str, str, str]]:
        """(`edge_id`, from `node_id`, to `node_id`) of a type after `after`, in id order."""
        records, _, _ = self._driver.execute_query(
            f"MATCH (a)-[r:{_check(relationship, RELATIONSHIPS)}]->(b) "
            "WHERE r.edge_id > $after "
            "RETURN r.edge_id AS id, a.node_id AS from, b.node_id AS to ORDER BY id LIMIT $limit",
            after=after,
            limit=limit,
            database_=self._database,
        )
        return [(str(r["id"]), str(r["from"]), str(r["to"])) for r in records]

    def delete(self, nodes: Iterable[NodeRef], edge_ids: Iterable[str]) -> None:
        """Remove nodes (with their relationships) and relationships in one transaction."""
        with (
            self._driver.session(database=self._database) as session,
            session.begin_transaction() as tx,
        ):
            _delete_edges(tx, edge_ids)
            _delete_nodes(tx, nodes)
            tx.commit()


def _node(node: GraphNode) -> Row:
    return node_row(node.ref.node_id, node.tenant_id, dict(node.properties))


def _edge(item: GraphEdge) -> Row:
    return edge_row(
        item.edge_id,
        item.source.node_id,
        item.target.node_id,
        item.tenant_id,
        dict(item.properties),
    )


def _edge_key(item: GraphEdge) -> tuple[str, str, str]:
    return item.relationship, item.source.label, item.target.label


def _project_segment(tx: ManagedTransaction | Any, segment: GraphSegment) -> None:
    _delete_nodes(tx, segment.deleted_nodes)
    _delete_edges(tx, segment.deleted_edges)
    by_label: dict[str, list[Row]] = defaultdict(list)
    for node, _ in segment.nodes.values():
        by_label[node.ref.label].append(_node(node))
    for label, rows in by_label.items():
        _merge_nodes(tx, label, rows)
    by_key: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for item, _ in segment.edges.values():
        by_key[_edge_key(item)].append(_edge(item))
    for key, rows in by_key.items():
        _merge_edges(tx, *key, rows)


def _merge_nodes(tx: ManagedTransaction | Any, label: str, rows: list[Row]) -> None:
    label = _check(label, LABELS)
    tx.run(
        f"UNWIND $rows AS row MERGE (n:{label} {{node_id: row.id}}) SET n += row.props",
        rows=rows,
    ).consume()


def _merge_edges(
    tx: ManagedTransaction | Any, relationship: str, from_label: str, to_label: str, rows: list[Row]
) -> None:
    relationship = _check(relationship, RELATIONSHIPS)
    from_label, to_label = _check(from_label, LABELS), _check(to_label, LABELS)
    # An edge whose row now names other endpoints (e.g. a holding moved to another atom) is
    # replaced: the unique `edge_id` cannot be on two relationships.
    tx.run(
        f"UNWIND $rows AS row "
        f"OPTIONAL MATCH (x)-[old:{relationship} {{edge_id: row.id}}]->(y) "
        "WHERE x.node_id <> row.from OR y.node_id <> row.to "
        "DELETE old "
        "WITH DISTINCT row "
        f"MERGE (a:{from_label} {{node_id: row.from}}) "
        f"MERGE (b:{to_label} {{node_id: row.to}}) "
        f"MERGE (a)-[r:{relationship} {{edge_id: row.id}}]->(b) SET r += row.props",
        rows=rows,
    ).consume()


def _delete_nodes(tx: ManagedTransaction | Any, refs: Iterable[NodeRef]) -> None:
    by_label: dict[str, list[str]] = defaultdict(list)
    for ref in refs:
        by_label[ref.label].append(ref.node_id)
    for label, ids in by_label.items():
        tx.run(
            f"UNWIND $ids AS id MATCH (n:{_check(label, LABELS)} {{node_id: id}}) DETACH DELETE n",
            ids=ids,
        ).consume()


def _delete_edges(tx: ManagedTransaction | Any, edge_ids: Iterable[str]) -> None:
    by_type: dict[str, list[str]] = defaultdict(list)
    for edge_id in edge_ids:
        # Edge ids start with their relationship type (see graph.edge).
        by_type[edge_id.split(":", 1)[0]].append(edge_id)
    for relationship, ids in by_type.items():
        tx.run(
            f"UNWIND $ids AS id MATCH ()-[r:{_check(relationship, RELATIONSHIPS)} "
            "{edge_id: id}]->() DELETE r",
            ids=ids,
        ).consume()
