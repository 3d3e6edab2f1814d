"""Shared fixtures of the sync tests: a database whose changes are captured as real CDC events."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.db.connection import libpq_url
from hartonomous.sync.worker import SyncOutcome, SyncWorker

HANG_GUARD_SECONDS = 120


def libpq(url: str) -> str:
    return libpq_url(url)


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def drain(source: Source, settings: Settings) -> SyncOutcome:
    """What `sync --once` does: one worker handles what is available now."""
    worker = SyncWorker(source.url, settings)
    try:
        return worker.drain()
    finally:
        worker.close()


def wait_until(condition: Callable[[], object], what: str) -> None:
    """Poll until `condition` holds; a hang guard (not a timing assertion) fails the test."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"hang guard: {what} did not happen")
        time.sleep(0.05)


@dataclass
class Source:
    """Writes real rows (as ingestion would) and turns them into queued CloudEvents."""

    url: str
    conn: psycopg.Connection[Any]
    ces: CesConsumer

    def capture(self) -> int:
        return self.ces.drain()

    def tenant(self, tenant_id: str, principal_id: str | None = None) -> None:
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (tenant_id, tenant_id.title()),
            )
            if principal_id is not None:
                self.conn.execute(
                    "INSERT INTO principals (tenant_id, principal_id, display_name) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (tenant_id, principal_id, principal_id.title()),
                )

    def ingest(
        self, tenant_id: str, count: int, *, principal_id: str | None = None, tag: str = ""
    ) -> uuid.UUID:
        """A completed job holding `count` new text atoms, one transaction per file."""
        job_id = uuid.uuid4()
        self.conn.execute(
            "INSERT INTO ingestion_jobs (tenant_id, job_id, principal_id) VALUES (%s, %s, %s)",
            (tenant_id, job_id, principal_id),
        )
        for n in range(count):
            text = f"{tenant_id}/{job_id}/{tag}{n}"
            atom = digest(text)
            with self.conn.transaction():
                self.conn.execute(
                    "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, "
                    "canonical_text) VALUES (%s, 'leaf', 'text', 'paragraph', %s, %s)",
                    (atom, len(text), text),
                )
                self.conn.execute(
                    "INSERT INTO atom_payloads (atom_id, content) VALUES (%s, %s)",
                    (atom, text.encode()),
                )
                self.conn.execute(
                    "INSERT INTO holdings (tenant_id, atom_id, source_uri, source_type, job_id, "
                    "metadata) VALUES (%s, %s, %s, 'file', %s, %s)",
                    (tenant_id, atom, f"file:///{text}", job_id, json.dumps({"n": n})),
                )
        self.conn.execute(
            "UPDATE ingestion_jobs SET status = 'completed', file_count = %s, "
            "finished_at = now() WHERE tenant_id = %s AND job_id = %s",
            (count, tenant_id, job_id),
        )
        return job_id

    def relate(self) -> None:
        """One `extracted_text` relation between the two atoms first in key order."""
        self.conn.execute(
            "INSERT INTO atom_relations (from_atom_id, relation_type, ordinal, to_atom_id) "
            "SELECT a.atom_id, 'extracted_text', 0, b.atom_id FROM atoms a, atoms b "
            "WHERE a.atom_id < b.atom_id ORDER BY a.atom_id, b.atom_id LIMIT 1"
        )

    def scalar(self, sql: str, *params: object) -> Any:
        row = self.conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return row[0]


@pytest.fixture
def source(database_url: str) -> Iterator[Source]:
    with psycopg.connect(libpq(database_url), autocommit=True) as conn:
        ces = CesConsumer(database_url, Settings())
        ces.prepare()
        try:
            yield Source(database_url, conn, ces)
        finally:
            ces.close()


VOCABULARY = (
    "Atom",
    "Model",
    "Tensor",
    "Inference",
    "IngestionJob",
    "GenerationStream",
    "Tenant",
    "Principal",
)


def clear_graph(uri: str) -> None:
    """The session's Neo4j is shared: remove every node of the graph vocabulary."""
    from neo4j import GraphDatabase

    labels = " OR ".join(f"n:{label}" for label in VOCABULARY)
    with GraphDatabase.driver(uri, auth=None) as driver:
        driver.execute_query(f"MATCH (n) WHERE {labels} DETACH DELETE n")


def neo4j_graph(uri: str) -> tuple[set[str], set[str]]:
    """Node ids and edge ids in Neo4j."""
    from neo4j import GraphDatabase

    with GraphDatabase.driver(uri, auth=None) as driver:
        nodes, _, _ = driver.execute_query(
            "MATCH (n) WHERE n.node_id IS NOT NULL RETURN n.node_id AS id"
        )
        edges, _, _ = driver.execute_query(
            "MATCH ()-[r]->() WHERE r.edge_id IS NOT NULL RETURN r.edge_id AS id"
        )
    return {r["id"] for r in nodes}, {r["id"] for r in edges}


def sql_graph(conn: psycopg.Connection[Any]) -> tuple[set[str], set[str]]:
    nodes = {r[0] for r in conn.execute("SELECT node_id FROM graph_nodes").fetchall()}
    edge_rows = conn.execute("SELECT edge_id, from_node_id, to_node_id FROM graph_edges").fetchall()
    # Edge endpoints that have no row of their own are merged into Neo4j as bare nodes.
    nodes |= {r[1] for r in edge_rows} | {r[2] for r in edge_rows}
    return nodes, {r[0] for r in edge_rows}


@pytest.fixture
def graph_uri(neo4j_uri: str) -> Iterator[str]:
    clear_graph(neo4j_uri)
    yield neo4j_uri
    clear_graph(neo4j_uri)
