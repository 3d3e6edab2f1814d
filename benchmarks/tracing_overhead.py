"""What tracing costs a search: off (the default, no endpoint), on (SDK spans for the service,
every database call, exported in batches), and the bare search function (no histogram, no span).

Run with ``python benchmarks/tracing_overhead.py [--paragraphs 5000] [--queries 300]
[--rounds 3]``. It starts its own embedded PostgreSQL in a temporary folder, loads the first
``--paragraphs`` paragraphs of the standard-library corpus for one tenant (as benchmarks/search.py
does, vectors cached on disk), and runs the same hybrid searches (query vectors known, so the
model is not timed) through ``services.search.search`` with tracing off and on, and through
``search.service.search`` bare. The three alternate in rounds so a change of the machine's load
weighs on each. "On" exports to an exporter that drops the spans after the SDK's batch
processor handed them over: the cost measured is the platform's (recording, instrumentation),
not a network's. Printed: median and p95 latency per configuration and the ratios off/bare and
on/off. Target (docs/operations.md, "Traces"): off within 2 % of bare.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy import Engine, create_engine

from hartonomous.config import Settings
from hartonomous.db import EmbeddedPostgres, head_revision, upgrade
from hartonomous.embed.indexing import Embedders
from hartonomous.observability.tracing import use_tracer_provider
from hartonomous.search import service as bare_search
from hartonomous.search.service import Query
from hartonomous.services import Platform
from hartonomous.services import search as search_service

try:
    from benchmarks.search import KnownVectors, load, percentiles
    from benchmarks.stdlib_corpus import Corpus, corpus_vectors, stdlib_corpus
except ModuleNotFoundError:  # run as a script: benchmarks/ is on sys.path
    from search import KnownVectors, load, percentiles  # type: ignore[no-redef]
    from stdlib_corpus import Corpus, corpus_vectors, stdlib_corpus  # type: ignore[no-redef]

TENANT = "bench"
K = 10


class Dropped(SpanExporter):
    """Takes the spans and keeps nothing (counts them, to show they were made)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    full = stdlib_corpus()
    count = min(args.paragraphs, len(full.paragraphs))
    corpus = Corpus(full.paragraphs[:count], full.sources[:count])
    vectors = corpus_vectors(full)[:count]
    rng = np.random.default_rng(20261130)
    texts = [corpus.paragraphs[row] for row in rng.choice(count, size=args.queries).tolist()]
    embedders = Embedders(KnownVectors(dict(zip(corpus.paragraphs, vectors, strict=True))))
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        with EmbeddedPostgres(root / "data") as server:
            engine = create_engine(server.url)
            upgrade(engine)
            load(server.url, corpus, vectors, {TENANT: set(range(count))})
            engine.dispose()
            print(f"corpus: {count} paragraphs, {args.queries} hybrid searches per run")
            run(server.url, texts, embedders, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(url: str, texts: list[str], embedders: Embedders, rounds: int) -> None:
    latencies: dict[str, list[float]] = {"bare": [], "off": [], "on": []}
    exporter = Dropped()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    for _ in range(rounds):
        for name, measured in latencies.items():
            use_tracer_provider(provider if name == "on" else None)
            # A new engine per run: psycopg is instrumented for connections opened after.
            engine = create_engine(url)
            call = searcher(name, engine, embedders)
            call(texts[0])  # warm the pool and the statements
            for text in texts:
                started = time.perf_counter()
                call(text)
                measured.append(time.perf_counter() - started)
            engine.dispose()
    use_tracer_provider(None)
    provider.shutdown()
    medians = {name: statistics.median(values) for name, values in latencies.items()}
    for name, values in latencies.items():
        _, p95 = percentiles(values)
        print(f"{name:5} median {medians[name] * 1000:7.2f} ms  p95 {p95 * 1000:7.2f} ms")
    print(
        f"off / bare: {medians['off'] / medians['bare']:.3f}x   on / off: "
        f"{medians['on'] / medians['off']:.3f}x   spans exported while on: {exporter.spans}"
    )


def searcher(name: str, engine: Engine, embedders: Embedders) -> Callable[[str], object]:
    """One hybrid search of a text: the bare function, or the service (histogram, spans)."""
    if name == "bare":
        return lambda text: bare_search.search(
            engine, TENANT, Query(text=text), K, mode="hybrid", embedders=embedders
        )
    platform = Platform(engine, Settings(), head_revision())
    return lambda text: search_service.search(
        platform, TENANT, Query(text=text), K, mode="hybrid", embedders=embedders
    )


if __name__ == "__main__":
    main()
