"""Ledger rows for export and archive tests, written by the real ledger writer."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from hartonomous.billing.ledger import LedgerEntry, write_entries
from hartonomous.billing.meter import UsageRecord
from hartonomous.messaging.broker import psycopg_connection
from hartonomous.security import ensure_tenant

OPERATIONS = ("neo4j_sync.ingest_completed", "neo4j_sync.model_updated", "usage.api_call")
SIX = Decimal("0.000001")


def _money(rng: random.Random, top: int) -> Decimal:
    return (Decimal(rng.randrange(0, top * 1_000_000)) * SIX).quantize(SIX)


def make_record(rng: random.Random, tenant: str) -> UsageRecord:
    units, rate, multiplier = _money(rng, 50), _money(rng, 1), _money(rng, 3)
    dcu = (units * rate * multiplier).quantize(SIX)
    price = Decimal("0.000080")
    return UsageRecord(
        tenant_id=tenant,
        principal_id=rng.choice(["ops", "", "svc"]),
        operation=rng.choice(OPERATIONS),
        message_type="io.hartonomous.test",
        handler="test",
        units=units,
        base_rate=rate,
        multiplier=multiplier,
        unit_price=price,
        total_dcu=dcu,
        total_cost=(dcu * price).quantize(SIX),
        metadata={"note": rng.choice(["a", 'quoted "b", with comma', "ü\nnewline"])},
    )


@pytest.fixture
def ledger(engine: Engine) -> dict[str, list[UsageRecord]]:
    """300 rows this month over two tenants, and 40 of acme's moved to 2026-01."""
    rng = random.Random(7)  # noqa: S311 - repeatable test data, not secrets
    records = {"acme": [make_record(rng, "acme") for _ in range(160)]}
    records["globex"] = [make_record(rng, "globex") for _ in range(140)]
    write_ledger(engine, records)
    move_to_period(engine, [f"evt-acme-{index}" for index in range(120, 160)], "2026-01")
    records["acme-earlier"] = records["acme"][120:]
    records["acme"] = records["acme"][:120]
    return records


def expected_totals(records: list[UsageRecord]) -> dict[str, dict[str, str]]:
    totals: dict[str, list[Decimal]] = {}
    for record in records:
        sums = totals.setdefault(record.operation, [Decimal(0)] * 4)
        sums[0] += 1
        sums[1] += record.units
        sums[2] += record.total_dcu
        sums[3] += record.total_cost
    return {
        operation: {
            "rows": str(int(rows)),
            "units": str(units.quantize(SIX)),
            "total_dcu": str(dcu.quantize(SIX)),
            "total_cost": str(cost.quantize(SIX)),
        }
        for operation, (rows, units, dcu, cost) in totals.items()
    }


def write_ledger(
    engine: Engine, records: dict[str, list[UsageRecord]], prefix: str = "evt"
) -> None:
    with engine.begin() as connection:
        for tenant in {record.tenant_id for rows in records.values() for record in rows}:
            ensure_tenant(connection, tenant, tenant)
    entries = [
        LedgerEntry(f"{prefix}-{key}-{index}", record, None)
        for key, rows in records.items()
        for index, record in enumerate(rows)
    ]
    with engine.connect() as connection:
        session = psycopg_connection(connection.execution_options(isolation_level="AUTOCOMMIT"))
        for start in range(0, len(entries), 5000):
            assert len(write_entries(session, entries[start : start + 5000])) == len(
                entries[start : start + 5000]
            )


def move_to_period(engine: Engine, event_ids: list[str], period: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE billing_usage_ledger SET billing_period = CAST(:period AS date) "
                "WHERE event_id = ANY(:ids)"
            ),
            {"ids": event_ids, "period": f"{period}-01"},
        )
