"""The ledger writer keeps every value exactly as given: text of any shape, money at scale 6,
plan ids and periods (the rows travel as binary arrays; a text array escaped each element)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
from sqlalchemy import Engine

from hartonomous.billing.ledger import LedgerEntry, write_entries
from hartonomous.billing.meter import UsageRecord
from hartonomous.db.connection import libpq_url
from hartonomous.security import ensure_tenant

PLAN = uuid.UUID("6f1c9d2e-3b4a-4c5d-8e7f-001122334455")
AWKWARD = ('q"uote', "back\\slash", "{brace},comma", "ü — ünïcode", "tab\tline\nend", "NULL", "")


def _record(n: int, text_value: str, amount: Decimal, principal: str) -> UsageRecord:
    return UsageRecord(
        tenant_id="acme",
        principal_id=principal,
        operation=f"usage.{text_value}" if text_value else "usage.plain",
        message_type=text_value or "plain",
        handler="test",
        units=amount,
        base_rate=Decimal("0.000001"),
        multiplier=Decimal("2.5729704"),  # stored rounded to 2.572970
        unit_price=Decimal("0.00008"),
        total_dcu=amount,
        total_cost=Decimal("-0.0000004"),  # rounds to zero: stored 0.000000, not -0.000000
        metadata={"text": text_value, "n": n, "exact": Decimal("0.1000000001"), "none": None},
    )


def test_every_value_is_written_exactly(engine: Engine, database_url: str) -> None:
    with engine.begin() as connection:
        ensure_tenant(connection, "acme", "Acme")
    amounts = (Decimal("0.000001"), Decimal("999999999999.999999"), Decimal("12.5"))
    entries = [
        LedgerEntry(
            f"evt-{n}-{text_value}",
            _record(n, text_value, amounts[n % 3], text_value if n % 2 else ""),
            PLAN if n % 2 else None,
            datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC),
        )
        for n, text_value in enumerate(AWKWARD)
    ]
    with psycopg.connect(libpq_url(database_url), autocommit=True) as session:
        # March is closed: every row is an adjustment line billed in April.
        session.execute(
            "INSERT INTO billing_closed_periods (billing_period, checksum, row_count, total_cost)"
            " VALUES ('2026-03-01', repeat('0', 64), 0, 0)"
        )
        assert write_entries(session, entries) == {entry.event_id for entry in entries}
        assert write_entries(session, entries) == set()  # a replay writes nothing
        rows = session.execute(
            "SELECT event_id, principal_id, operation, message_type, units::text, "
            "multiplier::text, total_cost::text, rate_plan_id, metadata::text, billing_period, "
            "adjusts_period FROM billing_usage_ledger ORDER BY event_id"
        ).fetchall()
    assert len(rows) == len(entries)
    for entry, row in zip(sorted(entries, key=lambda e: e.event_id), rows, strict=True):
        record = entry.record
        event_id, principal, operation, message_type, units, multiplier, cost, plan = row[:8]
        assert (event_id, operation, message_type) == (
            entry.event_id,
            record.operation,
            record.message_type,
        )
        assert principal == (record.principal_id or None)
        assert units == f"{record.units:.6f}"
        assert (multiplier, cost) == ("2.572970", "0.000000")
        assert plan == entry.rate_plan_id
        assert json.loads(row[8], parse_float=Decimal) == record.metadata
        assert (row[9], row[10]) == (date(2026, 4, 1), date(2026, 3, 1))
