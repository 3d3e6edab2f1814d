"""Table definitions: the metadata that migrations create and `smoke` verifies."""

from hartonomous.db.tables.atoms import (
    atom_components,
    atom_payloads,
    atom_reference_counts,
    atom_relations,
    atoms,
    holdings,
    ingestion_job_atoms,
    ingestion_job_plans,
    ingestion_jobs,
    model_tensors,
    models,
)
from hartonomous.db.tables.base import metadata
from hartonomous.db.tables.billing import (
    MULTIPLIER_DIMENSIONS,
    billing_multipliers,
    billing_operation_rates,
    billing_rate_plans,
)
from hartonomous.db.tables.embeddings import (
    atom_embeddings,
    atom_similarities,
    deduplication_policies,
    embedding_spaces,
    search_entries,
)
from hartonomous.db.tables.graph import graph_edges, graph_nodes, sync_counters
from hartonomous.db.tables.inference import (
    INFERENCE_ATOM_ROLES,
    INFERENCE_STATUSES,
    INFERENCE_TASKS,
    generation_streams,
    inference_atoms,
    inference_requests,
    inference_steps,
)
from hartonomous.db.tables.ledger import (
    billing_closed_periods,
    billing_ledger_archive_totals,
    billing_ledger_archives,
    billing_usage_event_receipts,
    billing_usage_ledger,
    billing_usage_rollup,
)
from hartonomous.db.tables.messaging import (
    broker_messages,
    broker_throughput,
    cdc_checkpoints,
    message_dead_letters,
)
from hartonomous.db.tables.operations import service_heartbeats, sync_control
from hartonomous.db.tables.security import api_keys, principals, server_secrets, tenants
from hartonomous.db.tables.throttle import security_throttle_counters

__all__ = [
    "INFERENCE_ATOM_ROLES",
    "INFERENCE_STATUSES",
    "INFERENCE_TASKS",
    "MULTIPLIER_DIMENSIONS",
    "api_keys",
    "atom_components",
    "atom_embeddings",
    "atom_payloads",
    "atom_reference_counts",
    "atom_relations",
    "atom_similarities",
    "atoms",
    "billing_closed_periods",
    "billing_ledger_archive_totals",
    "billing_ledger_archives",
    "billing_multipliers",
    "billing_operation_rates",
    "billing_rate_plans",
    "billing_usage_event_receipts",
    "billing_usage_ledger",
    "billing_usage_rollup",
    "broker_messages",
    "broker_throughput",
    "cdc_checkpoints",
    "deduplication_policies",
    "embedding_spaces",
    "generation_streams",
    "graph_edges",
    "graph_nodes",
    "holdings",
    "inference_atoms",
    "inference_requests",
    "inference_steps",
    "ingestion_job_atoms",
    "ingestion_job_plans",
    "ingestion_jobs",
    "message_dead_letters",
    "metadata",
    "model_tensors",
    "models",
    "principals",
    "search_entries",
    "security_throttle_counters",
    "server_secrets",
    "service_heartbeats",
    "sync_control",
    "sync_counters",
    "tenants",
]
