"""Vector search: recall@10 against exact search and latency, unfiltered and for a tenant that
holds 1% of the vectors, beside exact numpy search measured in the same run.

Run with ``python benchmarks/search.py [--vectors 100000]``. It starts its own embedded
PostgreSQL in a temporary folder, loads synthetic clustered 384-d unit vectors (2000 clusters,
like a corpus of many topics; uniform random vectors have no neighbourhoods worth finding)
into the real tables, builds the space's HNSW index (m 16, ef_construction 64: pgvector's
defaults) and searches through `search_vector`, the path `hartonomous search` takes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector
from sqlalchemy import Engine, create_engine, text

from hartonomous.db import EmbeddedPostgres, libpq_url, upgrade
from hartonomous.embed.spaces import get_space
from hartonomous.search.planner import PlannerSettings
from hartonomous.search.query import Scope, search_vector

SPACE = get_space("minilm-l6-v2")
K = 10
Vectors = npt.NDArray[np.float32]


def clustered(count: int, rng: np.random.Generator, centres: Vectors) -> Vectors:
    picks = rng.integers(0, len(centres), size=count)
    points = centres[picks] + rng.standard_normal((count, SPACE.dimension)).astype(np.float32) * 0.6
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def atom_id(index: int) -> bytes:
    return hashlib.sha256(index.to_bytes(8, "little")).digest()


def load(url: str, vectors: Vectors, small: set[int]) -> None:
    """Atoms, vectors, two holdings and their search entries, by COPY; then the HNSW index."""
    index_name = "ix_atom_embeddings_hnsw_minilm_l6_v2"
    with psycopg.connect(libpq_url(url)) as connection:
        register_vector(connection)
        definition = connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (index_name,)
        ).fetchone()
        assert definition is not None
        connection.execute(f"DROP INDEX {index_name}")  # building once beats growing it
        for tenant in ("everyone", "small"):
            ensure_tenant_sql(connection, tenant)
        with connection.cursor() as cursor:
            with cursor.copy(
                "COPY atoms (atom_id, kind, modality, size_bytes, canonical_text) FROM STDIN"
            ) as copy:
                for index in range(len(vectors)):
                    copy.write_row((atom_id(index), "leaf", "text", 0, f"vector {index}"))
            with cursor.copy(
                "COPY atom_embeddings (atom_id, space, dimension, embedding) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["bytea", "varchar", "int4", "vector"])
                for index, vector in enumerate(vectors):
                    copy.write_row((atom_id(index), SPACE.name, SPACE.dimension, vector))
            holdings = {}
            for tenant in ("everyone", "small"):
                holdings[tenant] = cursor.execute(
                    "INSERT INTO holdings (tenant_id, atom_id, source_uri, source_type) "
                    "VALUES (%s, %s, %s, 'file') RETURNING holding_id",
                    (tenant, atom_id(0), f"file:///{tenant}"),
                ).fetchone()[0]  # type: ignore[index]
            with cursor.copy(
                "COPY search_entries (tenant_id, space, atom_id, holding_id, visibility, "
                "source_type, source_modality, held_at) FROM STDIN"
            ) as copy:
                for index in range(len(vectors)):
                    tenants = ["everyone"] + (["small"] if index in small else [])
                    for tenant in tenants:
                        entry = (tenant, SPACE.name, atom_id(index), holdings[tenant])
                        copy.write_row((*entry, "private", "file", "text", "2026-01-01Z"))
        connection.commit()
        connection.execute("SET maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        connection.execute(definition[0])
        connection.commit()
        # What autovacuum would do soon after a bulk load: statistics and the visibility map.
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")
        print(f"HNSW index build: {time.perf_counter() - started:.1f} s")


def ensure_tenant_sql(connection: psycopg.Connection, tenant: str) -> None:  # type: ignore[type-arg]
    connection.execute(
        "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s)", (tenant, tenant)
    )


def exact_top(matrix: Vectors, query: Vectors) -> npt.NDArray[np.int64]:
    scores = matrix @ query
    top = np.argpartition(-scores, K)[:K]
    return top[np.argsort(-scores[top])]


def measure(
    label: str, queries: Vectors, run: Callable[[Vectors], list[int]], truth: list[set[int]]
) -> None:
    latencies, recalls = [], []
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        found = run(query)
        latencies.append((time.perf_counter() - started) * 1000.0)
        recalls.append(len(set(found) & expected) / K)
    p50, p95 = np.percentile(latencies, [50, 95])
    print(
        f"{label:52} recall@10 {statistics.fmean(recalls):.3f}   "
        f"p50 {p50:6.2f} ms   p95 {p95:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(20261127)
    centres = rng.standard_normal((2000, SPACE.dimension)).astype(np.float32)
    vectors = clustered(args.vectors, rng, centres)
    queries = clustered(args.queries, rng, centres)
    small = set(rng.choice(args.vectors, size=args.vectors // 100, replace=False).tolist())
    small_rows = np.array(sorted(small))
    index_of = {atom_id(i): i for i in range(args.vectors)}

    print(
        f"cpus: {os.cpu_count()}  vectors: {args.vectors} x {SPACE.dimension}  "
        f"queries: {args.queries}  tenant 'small' holds {len(small)}"
    )
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        with EmbeddedPostgres(root / "data") as server:
            engine = create_engine(server.url)
            upgrade(engine)
            started = time.perf_counter()
            load(server.url, vectors, small)
            print(f"load + index: {time.perf_counter() - started:.1f} s")
            run_searches(engine, vectors, queries, small_rows, index_of)
            engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_searches(
    engine: Engine,
    vectors: Vectors,
    queries: Vectors,
    small_rows: npt.NDArray[np.int64],
    index_of: dict[bytes, int],
) -> None:
    truth_all = [set(exact_top(vectors, q).tolist()) for q in queries]
    small_matrix = vectors[small_rows]
    truth_small = [set(small_rows[exact_top(small_matrix, q)].tolist()) for q in queries]

    measure(
        "numpy exact, all vectors", queries, lambda q: exact_top(vectors, q).tolist(), truth_all
    )
    measure(
        "numpy exact, the 1% tenant's vectors",
        queries,
        lambda q: small_rows[exact_top(small_matrix, q)].tolist(),
        truth_small,
    )
    with engine.connect() as connection:

        def searcher(tenant: str, settings: PlannerSettings) -> Callable[[Vectors], list[int]]:
            def run(query: Vectors) -> list[int]:
                with connection.begin():
                    found = search_vector(
                        connection, SPACE, query, K, Scope(tenant, False), settings=settings
                    )
                return [index_of[n.atom_id] for n in found.neighbours]

            return run

        default = PlannerSettings()
        searcher("everyone", default)(queries[0])  # warm-up: plans, caches
        measure(
            "search, unfiltered (tenant sees all; HNSW)",
            queries,
            searcher("everyone", default),
            truth_all,
        )
        measure(
            "search, tenant holds 1% (planner: exact scan)",
            queries,
            searcher("small", default),
            truth_small,
        )
        forced = PlannerSettings(exact_limit=0)
        measure(
            "search, tenant holds 1%, forced HNSW rounds",
            queries,
            searcher("small", forced),
            truth_small,
        )
        with connection.begin():
            connection.execute(text("SET hnsw.ef_search = 100"))
        single = PlannerSettings(exact_limit=0, first_ef_search=1000)
        measure(
            "search, tenant holds 1%, one HNSW round ef 1000",
            queries,
            searcher("small", single),
            truth_small,
        )


if __name__ == "__main__":
    main()
