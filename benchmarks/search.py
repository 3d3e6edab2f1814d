"""Search on a real corpus: recall@10 against exact search, self-query hit rates and latency of
the `search` service, beside raw pgvector SQL on the same index and `ef_search` in the same run.

Run with ``python benchmarks/search.py [--queries 200] [--self-queries 2000]``. The corpus is the
running Python's standard library documentation (benchmarks/stdlib_corpus.py: ~20,900
paragraphs), embedded once with the project's MiniLM and cached on disk. It starts its own
embedded PostgreSQL in a temporary folder, loads the paragraphs as text atoms with their
vectors and search entries (by COPY, into the real tables: `atoms.text_search` is generated as
at ingestion), builds the HNSW index (pgvector's defaults: m 16, ef_construction 64) and runs:

- raw pgvector SQL: `ORDER BY embedding <=> q LIMIT 10` with `hnsw.ef_search` 40, unfiltered and
  joined to a tenant's or a modality's search entries with `hnsw.iterative_scan` relaxed_order;
- the `search` service (what the CLI and the HTTP API call) for three scopes: a tenant that sees
  everything, a tenant holding 1 % of the entries, and a modality filter (the reference manual's
  paragraphs, stored as `document`); semantic and hybrid modes. Query embedding is timed apart
  (the service is given a text model that returns the vectors computed beforehand).

Queries are the first eight words of 200 random paragraphs (seeded); within a scope, raw SQL and
the service take turns on each query, so their ratio holds under a changing load. Exact search is
numpy over the same vectors.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector
from sqlalchemy import Engine, create_engine

from hartonomous.db import EmbeddedPostgres, libpq_url, upgrade
from hartonomous.embed.indexing import Embedders
from hartonomous.embed.spaces import get_space
from hartonomous.embed.text_model import MiniLMTextEmbedder, TextEmbeddings
from hartonomous.search.planner import PlannerSettings
from hartonomous.search.query import Filters
from hartonomous.search.service import Query, SearchMode, search

try:
    from benchmarks.stdlib_corpus import Corpus, corpus_vectors, stdlib_corpus
except ModuleNotFoundError:  # run as a script: benchmarks/ is on sys.path
    from stdlib_corpus import Corpus, corpus_vectors, stdlib_corpus  # type: ignore[no-redef]

SPACE = get_space("minilm-l6-v2")
K = 10
EF_SEARCH = 40
INDEX = "ix_atom_embeddings_hnsw_minilm_l6_v2"
Vectors = npt.NDArray[np.float32]
TENANTS = {"everyone": 1.0, "one-percent": 0.01, "five-percent": 0.05}


class KnownVectors(MiniLMTextEmbedder):
    """The real model, answering from vectors computed beforehand (query embedding is timed
    apart, so the service's latency is the search's)."""

    def __init__(self, known: dict[str, Vectors]) -> None:
        super().__init__()
        self.known = known

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> TextEmbeddings:
        if all(text in self.known for text in texts):
            vectors = np.stack([self.known[text] for text in texts])
            return TextEmbeddings(vectors, (0,) * len(texts), 256, (False,) * len(texts))
        return super().encode(texts, batch_size)


def atom_id(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def load(url: str, corpus: Corpus, vectors: Vectors, members: dict[str, set[int]]) -> None:
    """Atoms, vectors, holdings and search entries by COPY; then the HNSW index."""
    with psycopg.connect(libpq_url(url)) as connection:
        register_vector(connection)
        definition = connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (INDEX,)
        ).fetchone()
        assert definition is not None
        connection.execute(f"DROP INDEX {INDEX}")  # building once beats growing it
        for tenant in members:
            connection.execute(
                "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s)", (tenant, tenant)
            )
        with connection.cursor() as cursor:
            with cursor.copy(
                "COPY atoms (atom_id, kind, modality, size_bytes, canonical_text) FROM STDIN"
            ) as copy:
                for text in corpus.paragraphs:
                    copy.write_row((atom_id(text), "leaf", "text", len(text.encode()), text))
            with cursor.copy(
                "COPY atom_embeddings (atom_id, space, dimension, embedding) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["bytea", "varchar", "int4", "vector"])
                for text, vector in zip(corpus.paragraphs, vectors, strict=True):
                    copy.write_row((atom_id(text), SPACE.name, SPACE.dimension, vector))
            holdings = {}
            for tenant in members:
                for modality in ("text", "document"):
                    holdings[tenant, modality] = cursor.execute(
                        "INSERT INTO holdings (tenant_id, atom_id, source_uri, source_type) "
                        "VALUES (%s, %s, %s, 'file') RETURNING holding_id",
                        (tenant, atom_id(corpus.paragraphs[0]), f"file:///{tenant}/{modality}"),
                    ).fetchone()[0]  # type: ignore[index]
            with cursor.copy(
                "COPY search_entries (tenant_id, space, atom_id, holding_id, visibility, "
                "source_type, source_modality, held_at) FROM STDIN"
            ) as copy:
                for tenant, rows in members.items():
                    for row in sorted(rows):
                        modality = _modality(corpus, row)
                        holding = holdings[tenant, modality]
                        entry = (tenant, SPACE.name, atom_id(corpus.paragraphs[row]), holding)
                        copy.write_row((*entry, "private", "file", modality, "2026-01-01Z"))
        connection.commit()
        connection.execute("SET maintenance_work_mem = '512MB'")
        started = time.perf_counter()
        connection.execute(definition[0])
        connection.commit()
        # What autovacuum would do soon after a bulk load: statistics and the visibility map.
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")
        print(f"HNSW index build: {time.perf_counter() - started:.1f} s")


def _modality(corpus: Corpus, row: int) -> str:
    return "document" if corpus.sources[row] == "topic" else "text"


def exact_top(matrix: Vectors, rows: npt.NDArray[np.int64], query: Vectors) -> list[int]:
    scores = matrix[rows] @ query
    top = np.argpartition(-scores, K)[:K]
    return rows[top[np.argsort(-scores[top])]].tolist()  # type: ignore[no-any-return]


def percentiles(latencies: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(latencies, [50, 95])
    return float(p50), float(p95)


def measure(
    runs: dict[str, Callable[[int], list[int]]], queries: Sequence[int], truth: list[set[int]]
) -> dict[str, float]:
    """Prints recall@10 and latency of each run; returns their p50s in ms.

    The runs take turns on each query, so a change of the machine's load during the series
    weighs on all of them alike and their ratios stay comparable.
    """
    for run in runs.values():
        run(queries[0])  # warm-up: plans, caches
    latencies: dict[str, list[float]] = {label: [] for label in runs}
    recalls: dict[str, list[float]] = {label: [] for label in runs}
    for query, expected in zip(queries, truth, strict=True):
        for label, run in runs.items():
            started = time.perf_counter()
            found = run(query)
            latencies[label].append((time.perf_counter() - started) * 1000.0)
            recalls[label].append(len(set(found) & expected) / K)
    p50s = {}
    for label in runs:
        p50, p95 = percentiles(latencies[label])
        print(
            f"{label:58} recall@10 {statistics.fmean(recalls[label]):.3f}  "
            f"p50 {p50:6.2f} ms  p95 {p95:6.2f} ms"
        )
        p50s[label] = p50
    return p50s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--self-queries", type=int, default=2000)
    args = parser.parse_args()

    corpus = stdlib_corpus()
    vectors = corpus_vectors(corpus)
    count = len(corpus.paragraphs)
    rng = np.random.default_rng(20261130)
    members = {
        tenant: set(range(count))
        if share == 1.0
        else set(rng.choice(count, size=int(count * share), replace=False).tolist())
        for tenant, share in TENANTS.items()
    }
    documents = sum(1 for source in corpus.sources if source == "topic")
    print(
        f"cpus: {os.cpu_count()}  corpus: {count} paragraphs ({documents} from the reference "
        f"manual, stored as document)  tenants: "
        + ", ".join(f"{t} {len(m)}" for t, m in members.items())
    )
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        with EmbeddedPostgres(root / "data") as server:
            engine = create_engine(server.url)
            upgrade(engine)
            started = time.perf_counter()
            load(server.url, corpus, vectors, members)
            print(f"load + index: {time.perf_counter() - started:.1f} s")
            bench = Bench(engine, server.url, corpus, vectors, members, rng)
            run_benchmark(bench, args.queries, args.self_queries)
            engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Bench:
    engine: Engine
    url: str
    corpus: Corpus
    vectors: Vectors
    members: dict[str, set[int]]
    rng: np.random.Generator

    def __post_init__(self) -> None:
        self.row_of = {atom_id(text): row for row, text in enumerate(self.corpus.paragraphs)}
        self.known: dict[str, Vectors] = dict(
            zip(self.corpus.paragraphs, self.vectors, strict=True)
        )
        self.embedders = Embedders(KnownVectors(self.known))

    def service(
        self,
        texts: list[str],
        tenant: str,
        mode: SearchMode,
        filters: Filters | None = None,
        settings: PlannerSettings | None = None,
    ) -> Callable[[int], list[int]]:
        """The `search` service call for query number q, as corpus rows."""

        def run(q: int) -> list[int]:
            result = search(
                self.engine, tenant, Query(text=texts[q]), K,
                mode=mode, filters=filters, embedders=self.embedders, settings=settings,
            )  # fmt: skip
            return [self.row_of[bytes.fromhex(hit.atom_id)] for hit in result.hits]

        return run


def run_benchmark(bench: Bench, queries_wanted: int, self_queries_wanted: int) -> None:
    corpus, vectors, members = bench.corpus, bench.vectors, bench.members
    count = len(corpus.paragraphs)
    picked = bench.rng.choice(count, size=queries_wanted, replace=False).tolist()
    texts = [" ".join(corpus.paragraphs[row].split()[:8]) for row in picked]
    model = MiniLMTextEmbedder()
    model.load()
    embed_latencies = []
    for text in texts:
        started = time.perf_counter()
        bench.known[text] = model.embed([text])[0]
        embed_latencies.append((time.perf_counter() - started) * 1000.0)
    p50, p95 = percentiles(embed_latencies)
    label = "query embedding (MiniLM, one query, apart)"
    print(f"{label:58} {'':15}  p50 {p50:6.2f} ms  p95 {p95:6.2f} ms")
    queries = list(range(len(texts)))
    document_rows = np.array([r for r in range(count) if _modality(corpus, r) == "document"])
    scopes = {
        "unfiltered": ("everyone", Filters(), np.arange(count)),
        "1% tenant": ("one-percent", Filters(), np.array(sorted(members["one-percent"]))),
        "modality filter": ("everyone", Filters(source_modality="document"), document_rows),
    }
    raw = raw_pgvector(bench.url)
    p50s: dict[str, float] = {}
    for name, (tenant, filters, rows) in scopes.items():
        truth = [set(exact_top(vectors, rows, bench.known[t])) for t in texts]

        def raw_rows(q: int, tenant: str = tenant, filters: Filters = filters) -> list[int]:
            return [bench.row_of[a] for a in raw(bench.known[texts[q]], tenant, filters)]

        runs = {f"raw pgvector SQL, {name} (ef_search {EF_SEARCH})": raw_rows}
        for mode in ("semantic", "hybrid"):
            runs[f"search --mode {mode}, {name}"] = bench.service(texts, tenant, mode, filters)  # type: ignore[arg-type]
        if name != "unfiltered":
            runs[f"search --mode semantic, {name}, iterative scan forced"] = bench.service(
                texts, tenant, "semantic", filters, PlannerSettings(exact_limit=0)
            )
        measured = list(measure(runs, queries, truth).values())
        p50s[f"raw {name}"], p50s[f"semantic {name}"], p50s[f"hybrid {name}"] = measured[:3]
    five = np.array(sorted(members["five-percent"]))
    truth = [set(exact_top(vectors, five, bench.known[t])) for t in texts]
    measure(
        {
            f"search --mode semantic, 5% tenant, {label}": bench.service(
                texts, "five-percent", "semantic", None, settings
            )
            for label, settings in (
                ("exact scan forced", PlannerSettings(exact_limit=10**6)),
                ("iterative scan", PlannerSettings(exact_limit=0)),
            )
        },
        queries,
        truth,
    )
    for name in scopes:
        ratio = p50s[f"semantic {name}"] / p50s[f"raw {name}"]
        extra = p50s[f"hybrid {name}"] - p50s[f"semantic {name}"]
        print(f"{name}: search p50 / raw p50 = {ratio:.2f}x; hybrid adds {extra:+.2f} ms")
    self_queries(bench, self_queries_wanted)


def raw_pgvector(url: str) -> Callable[[Vectors, str, Filters], list[bytes]]:
    connection = psycopg.connect(libpq_url(url), autocommit=True)
    register_vector(connection)
    connection.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
    connection.execute("SET hnsw.iterative_scan = relaxed_order")
    cast = f"vector({SPACE.dimension})"

    def run(query: Vectors, tenant: str, filters: Filters) -> list[bytes]:
        if tenant == "everyone" and filters.source_modality is None:
            sql = (
                f"SELECT atom_id FROM atom_embeddings WHERE space = %(space)s "
                f"ORDER BY embedding::{cast} <=> %(q)s::{cast} LIMIT {K}"
            )
        else:
            modality = "AND s.source_modality = %(modality)s" if filters.source_modality else ""
            sql = (
                "SELECT e.atom_id FROM atom_embeddings e JOIN search_entries s "
                "ON s.atom_id = e.atom_id AND s.space = e.space "
                f"WHERE e.space = %(space)s AND s.tenant_id = %(tenant)s {modality} "
                f"ORDER BY e.embedding::{cast} <=> %(q)s::{cast} LIMIT {K}"
            )
        rows = connection.execute(
            sql,  # type: ignore[arg-type]
            {
                "space": SPACE.name,
                "q": query,
                "tenant": tenant,
                "modality": filters.source_modality,
            },
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    return run


def self_queries(bench: Bench, count: int) -> None:
    """Stored entries queried with their own text (hybrid) and own vector (semantic)."""
    paragraphs = bench.corpus.paragraphs
    rows = bench.rng.choice(len(paragraphs), size=count, replace=False).tolist()
    for mode in ("hybrid", "semantic"):
        run = bench.service(paragraphs, "everyone", mode)  # type: ignore[arg-type]
        missed = []
        started = time.perf_counter()
        for row in rows:
            found = run(row)
            if not found or found[0] != row:
                missed.append(row)
        elapsed = time.perf_counter() - started
        own = "text" if mode == "hybrid" else "vector"
        print(
            f"self-query, {mode:8} ({count} stored entries, own {own}): hit rate "
            f"{1 - len(missed) / count:.4f} ({len(missed)} missed; "
            f"{elapsed / count * 1000:.1f} ms each)"
        )
        for row in missed[:3]:
            print(f"    missed: {paragraphs[row][:100]!r}")


if __name__ == "__main__":
    main()
