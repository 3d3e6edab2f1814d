"""Sync worker throughput: change → ledger events/s with Neo4j off and on, and the Neo4j
projection rate batched (`UNWIND … MERGE`) vs one write per event, measured in the same run.

Uses its own embedded PostgreSQL and a test Neo4j 5 server (tests/neo4j_server.py, built from
Maven Central artifacts), both in a temporary directory.

The same path over the in-database broker and over Kafka, with 1 and 2 worker processes and
the p95 latency, is `benchmarks/broker.py --transports-only` (benchmarks/transports.py).

    .venv/bin/python benchmarks/sync.py [--files 2000] [--projection-items 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.transports import ingest_one
from tests.neo4j_server import start_neo4j

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.db import EmbeddedPostgres, upgrade
from hartonomous.db.connection import libpq_url
from hartonomous.sync.graph import (
    GraphBatch,
    GraphChange,
    GraphNode,
    atom_ref,
    edge,
    tenant_ref,
)
from hartonomous.sync.projector import Neo4jProjector
from hartonomous.sync.worker import SyncWorker


def libpq(url: str) -> str:
    return libpq_url(url)


def ingest(conn: psycopg.Connection[object], tenant: str, files: int) -> None:
    """`files` holdings of new text atoms, one transaction per file (as ingestion commits)."""
    job = uuid.uuid4()
    conn.execute("INSERT INTO ingestion_jobs (tenant_id, job_id) VALUES (%s, %s)", (tenant, job))
    for n in range(files):
        ingest_one(conn, tenant, job, n)


def end_to_end(url: str, settings: Settings, tenant: str, files: int) -> tuple[int, float]:
    """Events handled and seconds from committed changes to their ledger rows."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s)", (tenant, tenant)
        )
        consumer = CesConsumer(url, settings)
        consumer.prepare()
        consumer.drain()
        ingest(conn, tenant, files)
        worker = SyncWorker(url, settings, batch_size=200)
        try:
            worker.connection()  # the session (and a Kafka group's assignment) before the clock
            started = time.perf_counter()
            events = consumer.drain()
            outcome = worker.drain()
            seconds = time.perf_counter() - started
        finally:
            worker.close()
            consumer.close()
        billed = conn.execute(
            "SELECT count(*) FROM billing_usage_ledger WHERE tenant_id = %s", (tenant,)
        ).fetchone()
    if billed is None or billed[0] != files or outcome.completed < events:
        raise SystemExit(f"benchmark run is wrong: billed {billed} of {files}, {outcome}")
    return outcome.completed, seconds


def projection_batch(prefix: str, items: int) -> GraphBatch:
    batch = GraphBatch()
    owner = tenant_ref(prefix)
    for n in range(items):
        atom = atom_ref(hashlib.sha256(f"{prefix}{n}".encode()).hexdigest())
        change = GraphChange(
            nodes=(GraphNode(atom, None, {"n": n, "modality": "text"}),),
            edges=(edge("OWNS", owner, atom, tenant_id=prefix, key=str(n)),),
        )
        batch.add(change, f"{prefix}-{n}")
    return batch


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--projection-items", type=int, default=2000)
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-sync-"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg")
    server.start()
    neo4j = start_neo4j(root / "neo4j")
    try:
        engine = create_engine(server.url)
        upgrade(engine)
        engine.dispose()
        off = Settings()
        on = Settings.model_validate({"neo4j": {"uri": neo4j.uri}})
        # The Neo4j schema (constraints and their indexes) is made once per database, not per
        # event: set it up before the clock starts, and say what it cost.
        projector = Neo4jProjector(on.neo4j)
        try:
            started = time.perf_counter()
            projector.ensure_schema()
            print(f"Neo4j schema set up once in {time.perf_counter() - started:.2f} s")
        finally:
            projector.close()
        for label, settings, tenant in (("off", off, "bench-off"), ("on", on, "bench-on")):
            events, seconds = end_to_end(server.url, settings, tenant, args.files)
            print(
                f"end-to-end (change -> ledger), Neo4j {label}: {events} events in "
                f"{seconds:.2f} s = {events / seconds:,.0f} events/s "
                f"({args.files / seconds:,.0f} billed holdings/s)"
            )
        projector = Neo4jProjector(on.neo4j)
        try:
            items = args.projection_items
            started = time.perf_counter()
            for segment_start in range(0, items, 200):
                chunk = projection_batch(f"b{segment_start}", min(200, items - segment_start))
                projector.project(chunk)
            batched_seconds = time.perf_counter() - started
            single = projection_batch("single", items)
            started = time.perf_counter()
            projector.project_each(single)
            single_seconds = time.perf_counter() - started
            writes = 2 * items
            print(
                f"Neo4j projection, batched UNWIND/MERGE (200 events a transaction): "
                f"{items / batched_seconds:,.0f} events/s ({writes} writes in "
                f"{batched_seconds:.2f} s)"
            )
            print(
                f"Neo4j projection, one write per node/edge: {items / single_seconds:,.0f} "
                f"events/s ({writes} writes in {single_seconds:.2f} s); batched is "
                f"{single_seconds / batched_seconds:.1f}x faster"
            )
        finally:
            projector.close()
    finally:
        neo4j.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
