"""This process's own metrics: latency histograms measured where the work runs.

They live in ``PROCESS_REGISTRY`` (prometheus_client) and are served by this process's
`/metrics` beside the figures read from the database at scrape time (``services.metrics``).
A histogram only sees the work of the process that serves it: under `up` the API, ingestion,
search and the sync worker share one process; a separate `worker` or `sync` process is not
seen here (docs/operations.md, "Metrics").
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

__all__ = [
    "EMBEDDING_BATCH_SECONDS",
    "NEO4J_TRANSACTION_SECONDS",
    "PROCESS_REGISTRY",
    "SEARCH_SECONDS",
]

PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)

# Searches take milliseconds to seconds: buckets from 1 ms to 10 s.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SEARCH_SECONDS = Histogram(
    "hartonomous_search_duration_seconds",
    "Time to answer one search (services.search.search), by mode.",
    ["mode"],
    buckets=_LATENCY_BUCKETS,
    registry=PROCESS_REGISTRY,
)
EMBEDDING_BATCH_SECONDS = Histogram(
    "hartonomous_embedding_batch_duration_seconds",
    "Time to embed one batch of texts with the text model (embed.indexing).",
    buckets=_LATENCY_BUCKETS,
    registry=PROCESS_REGISTRY,
)
NEO4J_TRANSACTION_SECONDS = Histogram(
    "hartonomous_neo4j_transaction_duration_seconds",
    "Time of one Neo4j projection transaction of the sync worker in this process.",
    buckets=_LATENCY_BUCKETS,
    registry=PROCESS_REGISTRY,
)
