"""Table definitions: the metadata that migrations create and `smoke` verifies."""

from hartonomous.db.tables.atoms import (
    atom_components,
    atom_payloads,
    atom_relations,
    atoms,
    holdings,
    ingestion_job_atoms,
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
from hartonomous.db.tables.messaging import (
    broker_messages,
    broker_throughput,
    cdc_checkpoints,
    message_dead_letters,
)
from hartonomous.db.tables.security import api_keys, principals, tenants

__all__ = [
    "MULTIPLIER_DIMENSIONS",
    "api_keys",
    "atom_components",
    "atom_payloads",
    "atom_relations",
    "atoms",
    "billing_multipliers",
    "billing_operation_rates",
    "billing_rate_plans",
    "broker_messages",
    "broker_throughput",
    "cdc_checkpoints",
    "holdings",
    "ingestion_job_atoms",
    "ingestion_jobs",
    "message_dead_letters",
    "metadata",
    "model_tensors",
    "models",
    "principals",
    "tenants",
]
