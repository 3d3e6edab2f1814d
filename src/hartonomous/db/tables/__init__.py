"""Table definitions: the metadata that migrations create and `smoke` verifies."""

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
    "billing_multipliers",
    "billing_operation_rates",
    "billing_rate_plans",
    "broker_messages",
    "broker_throughput",
    "cdc_checkpoints",
    "message_dead_letters",
    "metadata",
    "principals",
    "tenants",
]
