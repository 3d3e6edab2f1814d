"""The usage ledger writer (docs/billing.md): one row per billed event, in the ack's transaction.

Each row is billed in the period of its event's time, or as an adjustment in the first open
period when that one is closed (`billing.periods`, docs/billing.md "Monthly close").

(tenant_id, event_id) is unique and the insert skips an event already recorded, so a
redelivered or replayed message never bills twice (every delivery of an event names the same
tenant: docs/scale-out.md, "Keys"). Any failure to write is a `LedgerWriteError`: the worker
stops rather than complete messages whose usage was not recorded (seed incident rule).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from hartonomous.billing.meter import LedgerAmounts, UsageRecord, metadata_json
from hartonomous.billing.periods import billing_periods, lock_for_writing, period_of

Connection = psycopg.Connection[Any]

# Every array travels in binary: the text form of an array escapes each element with a regular
# expression (every quote of every JSON object, every event id), which cost more than the
# meter; binary arrays carry strings as they are and numerics with their scale.
_INSERT = """
INSERT INTO billing_usage_ledger (
    event_id, tenant_id, principal_id, operation, message_type, handler, units, base_rate,
    multiplier, total_dcu, unit_price, total_cost, rate_plan_id, metadata, billing_period,
    adjusts_period)
SELECT * FROM unnest(
    %(event_ids)b::text[], %(tenants)b::text[], %(principals)b::text[], %(operations)b::text[],
    %(message_types)b::text[], %(handlers)b::text[], %(units)b::numeric[],
    %(base_rates)b::numeric[], %(multipliers)b::numeric[], %(dcus)b::numeric[],
    %(unit_prices)b::numeric[], %(costs)b::numeric[], %(plans)b::uuid[],
    %(metadata)b::text[]::json[], %(periods)b::date[], %(adjusts)b::date[])
ON CONFLICT (tenant_id, event_id) DO NOTHING
RETURNING event_id
"""


def inference_ledger_key(tenant_id: str, inference_id: object) -> str:
    """The ledger `event_id` of an inference's bill: one row per inference, whatever number
    of events carry it completed (docs/sync.md, "Inferences are billed once")."""
    return f"inference:{tenant_id}:{inference_id}"


class LedgerWriteError(RuntimeError):
    """The ledger could not be written; the worker must stop consuming."""


@dataclass(frozen=True)
class LedgerEntry:
    event_id: str
    record: UsageRecord
    rate_plan_id: uuid.UUID | None
    # When the usage happened (the CloudEvent's `time`, aware); None: now. Decides the period.
    occurred_at: datetime | None = None
    # `record.ledger_amounts()`, when the caller already computed them (to check they fit).
    amounts: LedgerAmounts | None = None


def write_entries(connection: Connection, entries: Sequence[LedgerEntry]) -> set[str]:
    """Insert the entries (skipping recorded event ids); the event ids of the rows inserted.

    Raises `LedgerWriteError` when the rows cannot be written.
    """
    if not entries:
        return set()
    amounts = [entry.amounts or entry.record.ledger_amounts() for entry in entries]
    now = datetime.now(UTC)
    parameters = {
        "event_ids": [e.event_id for e in entries],
        "tenants": [e.record.tenant_id for e in entries],
        "principals": [e.record.principal_id or None for e in entries],
        "operations": [e.record.operation for e in entries],
        "message_types": [e.record.message_type for e in entries],
        "handlers": [e.record.handler for e in entries],
        "units": [a.units for a in amounts],
        "base_rates": [a.base_rate for a in amounts],
        "multipliers": [a.multiplier for a in amounts],
        "dcus": [a.total_dcu for a in amounts],
        "unit_prices": [a.unit_price for a in amounts],
        "costs": [a.total_cost for a in amounts],
        "plans": [e.rate_plan_id for e in entries],
        "metadata": [metadata_json(e.record.metadata) for e in entries],
    }
    try:
        with connection.transaction():
            closed = lock_for_writing(connection)
            # Once per distinct time: a batch's events mostly share a few.
            by_time: dict[datetime | None, tuple[date, date | None]] = {}
            for entry in entries:
                if entry.occurred_at not in by_time:
                    moment = entry.occurred_at or now
                    by_time[entry.occurred_at] = billing_periods(period_of(moment), closed)
            periods = [by_time[entry.occurred_at] for entry in entries]
            parameters["periods"] = [billed for billed, _ in periods]
            parameters["adjusts"] = [adjusted for _, adjusted in periods]
            return {str(row[0]) for row in connection.execute(_INSERT, parameters).fetchall()}
    except psycopg.Error as exc:
        raise LedgerWriteError(
            f"cannot write billing_usage_ledger: {type(exc).__name__}: {exc}".strip()
        ) from exc
