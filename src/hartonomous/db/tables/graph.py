"""The SQL graph (docs/sync.md): nodes and edges the sync worker keeps, and Neo4j mirrors.

Ids are stable strings built from the source rows (`atom:<hex>`, `job:<tenant>:<uuid>`...), so
every upsert and every Neo4j MERGE is idempotent. They are `text`: an id holds every key the
source tables allow (migration 0010). Atoms, models and tensors are shared by all
tenants, so their nodes carry no tenant (NULL); tenant-owned nodes and edges carry theirs.
`projected_at` older than `updated_at` (or NULL) means Neo4j has not seen the latest version:
that is the projection lag `graph status` reports and `graph replay` clears.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, String, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB

from hartonomous.db.tables.base import TENANT_ID_LENGTH, metadata

_UNPROJECTED = text("projected_at IS NULL OR projected_at < updated_at")

graph_nodes = Table(
    "graph_nodes",
    metadata,
    Column("node_id", Text, primary_key=True),
    Column("label", String(32), nullable=False),
    Column("tenant_id", String(TENANT_ID_LENGTH)),
    Column("properties", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("source_event_id", String(128)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("projected_at", DateTime(timezone=True)),
    Index(None, "tenant_id", "label"),
    Index("ix_graph_nodes_unprojected", "updated_at", postgresql_where=_UNPROJECTED),
)

graph_edges = Table(
    "graph_edges",
    metadata,
    Column("edge_id", Text, primary_key=True),
    Column("relationship", String(32), nullable=False),
    Column("from_node_id", Text, nullable=False),
    Column("from_label", String(32), nullable=False),
    Column("to_node_id", Text, nullable=False),
    Column("to_label", String(32), nullable=False),
    Column("tenant_id", String(TENANT_ID_LENGTH)),
    Column("properties", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("source_event_id", String(128)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("projected_at", DateTime(timezone=True)),
    Index(None, "from_node_id"),
    Index(None, "to_node_id"),
    Index("ix_graph_edges_unprojected", "updated_at", postgresql_where=_UNPROJECTED),
)

# What the sync worker did with events it did not bill or project, so nothing is dropped
# silently: one row per counter name (e.g. `skipped:atoms.chunk`, `unbilled:no_tenant`).
sync_counters = Table(
    "sync_counters",
    metadata,
    Column("counter", String(256), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
