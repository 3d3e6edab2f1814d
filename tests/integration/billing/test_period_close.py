"""Closing billing periods at the ledger writer (what the sync worker calls for CDC and usage
events alike): periods from the event's time, adjustments in the first open period, the
checksum of the closed totals, and adjustments shown in exports (docs/billing.md)."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from tests.conftest import Cli

from hartonomous.billing.ledger import LedgerEntry, write_entries
from hartonomous.billing.meter import UsageRecord
from hartonomous.billing.periods import billing_periods, next_period
from hartonomous.billing.usage_events import parse_usage_event
from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.messaging.broker import psycopg_connection
from hartonomous.security import ensure_tenant
from hartonomous.services import Platform
from hartonomous.services.ledger_close import close_ledger_period
from hartonomous.services.ledger_files import export_ledger

from .conftest import SIX, make_record

NOW = datetime.now(UTC)


@pytest.fixture
def platform(engine: Engine) -> Platform:
    """Both engines the owner's, as in the CLI."""
    return Platform(engine=engine, settings=Settings(), migrations_head=head_revision())


THIS = NOW.date().replace(day=1)
LAST = (THIS - timedelta(days=1)).replace(day=1)
BEFORE_LAST = (LAST - timedelta(days=1)).replace(day=1)


def _at(period: date) -> datetime:
    return datetime(period.year, period.month, 10, 12, tzinfo=UTC)


def _write(engine: Engine, entries: list[LedgerEntry]) -> None:
    with engine.begin() as connection:
        for tenant in {entry.record.tenant_id for entry in entries}:
            ensure_tenant(connection, tenant, tenant)
    with engine.connect() as connection:
        session = psycopg_connection(connection.execution_options(isolation_level="AUTOCOMMIT"))
        assert len(write_entries(session, entries)) == len(entries)


def _periods(engine: Engine, event_id: str) -> tuple[date, date | None]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT billing_period, adjusts_period FROM billing_usage_ledger "
                "WHERE event_id = :id"
            ),
            {"id": event_id},
        ).one()
    return row[0], row[1]


def _checksum(records: list[UsageRecord]) -> str:
    """The documented checksum, computed here from the records themselves."""
    totals: dict[tuple[str, str], list[Decimal]] = {}
    for record in records:
        sums = totals.setdefault((record.tenant_id, record.operation), [Decimal(0)] * 4)
        for at, value in enumerate((Decimal(1), record.units, record.total_dcu, record.total_cost)):
            sums[at] += value
    lines = "".join(
        f"{tenant},{operation},{int(rows)},{units.quantize(SIX)},{dcu.quantize(SIX)},"
        f"{cost.quantize(SIX)}\n"
        for (tenant, operation), (rows, units, dcu, cost) in sorted(
            totals.items(), key=lambda item: (item[0][0].encode(), item[0][1].encode())
        )
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def test_rows_bill_in_their_events_period_and_late_ones_adjust_the_first_open_period(
    engine: Engine, platform: Platform, tmp_path: Path
) -> None:
    rng = random.Random(3)  # noqa: S311 - repeatable test data
    before_last = [make_record(rng, rng.choice(["acme", "globex"])) for _ in range(30)]
    last = [make_record(rng, "acme") for _ in range(10)]
    _write(
        engine,
        [
            *(LedgerEntry(f"bl-{n}", r, None, _at(BEFORE_LAST)) for n, r in enumerate(before_last)),
            *(LedgerEntry(f"l-{n}", r, None, _at(LAST)) for n, r in enumerate(last)),
        ],
    )
    assert _periods(engine, "bl-0") == (BEFORE_LAST, None)
    assert _periods(engine, "l-0") == (LAST, None)

    closed = close_ledger_period(platform, f"{BEFORE_LAST:%Y-%m}")
    assert closed.checksum == _checksum(before_last)
    assert closed.row_count == 30

    # Late for a closed period: billed in the first open one after it, pointing back.
    late = make_record(rng, "acme")
    _write(engine, [LedgerEntry("late-1", late, None, _at(BEFORE_LAST))])
    assert _periods(engine, "late-1") == (LAST, BEFORE_LAST)

    # With the next period closed too, the first open one is the one after both.
    close_ledger_period(platform, f"{LAST:%Y-%m}")
    _write(engine, [LedgerEntry("late-2", make_record(rng, "acme"), None, _at(BEFORE_LAST))])
    assert _periods(engine, "late-2") == (THIS, BEFORE_LAST)
    # A late row changes nothing of what was closed: the same checksum again.
    assert close_ledger_period(platform, f"{BEFORE_LAST:%Y-%m}").checksum == closed.checksum
    assert close_ledger_period(platform, f"{LAST:%Y-%m}").row_count == 11  # 10 + late-1

    manifest = export_ledger(platform, f"{THIS:%Y-%m}", tmp_path / "export")
    with (tmp_path / "export" / manifest.files[0].name).open(newline="") as handle:
        exported = {row["event_id"]: row for row in csv.DictReader(handle)}
    assert exported["late-2"]["adjusts_period"] == f"{BEFORE_LAST:%Y-%m}"
    assert exported["late-2"]["billing_period"] == f"{THIS:%Y-%m}"


def test_rows_without_an_event_time_bill_in_the_current_period(engine: Engine) -> None:
    rng = random.Random(4)  # noqa: S311
    _write(engine, [LedgerEntry("now-1", make_record(rng, "acme"), None)])
    assert _periods(engine, "now-1") == (THIS, None)


def test_the_billing_period_rule_skips_every_closed_period() -> None:
    jan, feb, mar, apr = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)
    assert billing_periods(jan, frozenset()) == (jan, None)
    assert billing_periods(jan, frozenset({jan, feb, mar})) == (apr, jan)
    assert billing_periods(feb, frozenset({jan})) == (feb, None)
    assert next_period(date(2026, 12, 1)) == date(2027, 1, 1)


def test_an_event_time_with_an_offset_counts_in_utc() -> None:
    event = parse_usage_event(
        {
            "specversion": "1.0",
            "id": "1",
            "source": "s",
            "type": "t",
            "time": "2026-01-31T22:30:00-05:00",
            "data": {"units": 1},
        },
        now=NOW,
    )
    assert event.time == datetime(2026, 2, 1, 3, 30, tzinfo=UTC)


def test_ledger_close_on_the_command_line(cli: Cli, engine: Engine) -> None:
    rng = random.Random(5)  # noqa: S311
    record = make_record(rng, "acme")
    _write(engine, [LedgerEntry("cli-1", record, None, _at(LAST))])
    first = cli("--json", "ledger", "close", f"{LAST:%Y-%m}")
    assert first.exit_code == 0, first.stderr
    closed = json.loads(first.stdout)
    assert closed["closed_now"] is True
    assert closed["rows"] == 1
    assert closed["checksum"] == _checksum([record])
    again = json.loads(cli("--json", "ledger", "close", f"{LAST:%Y-%m}").stdout)
    assert (again["checksum"], again["closed_now"]) == (closed["checksum"], False)
    current = cli("ledger", "close", f"{THIS:%Y-%m}")
    assert current.exit_code == 2
    assert "has not ended" in current.stderr
    malformed = cli("ledger", "close", "2026-1")
    assert malformed.exit_code == 2
    assert "YYYY-MM" in malformed.stderr
