"""An export copied by several sessions at once (billing/export_streams.py) writes the bytes a
single COPY writes: every row once, in file order, whatever the ranges and however the rows
fall on their edges."""

from __future__ import annotations

import csv
import io
import random
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from hartonomous.billing.export import ExportFormat, export_period, verify_export
from hartonomous.billing.export_streams import key_ranges
from hartonomous.messaging.broker import psycopg_connection
from hartonomous.security import ensure_tenant

TENANTS = ("acme", "globex", "initech")
# The middle of the rows' five days; rows at midnight UTC lie exactly on a range's edge.
PERIOD = date(2026, 3, 1)
MIDNIGHT = datetime(2026, 3, 10, tzinfo=UTC)


@pytest.fixture
def spread_ledger(engine: Engine) -> int:
    """240 rows of March 2026 over three tenants and five days, inserted with their times (the
    rollup trigger counts them per day): a quarter at exactly midnight UTC, a few sharing one
    instant, quotes and new lines in metadata. Returns the row count."""
    rng = random.Random(11)  # noqa: S311 - repeatable test data, not secrets
    rows = []
    for index in range(240):
        day = MIDNIGHT + timedelta(days=rng.randrange(-2, 3))
        at = day if index % 4 == 0 else day + timedelta(seconds=rng.randrange(1, 86_400))
        note = rng.choice(['"quoted", comma', "ü\nline", "plain"])
        rows.append(
            {
                "event_id": f"spread-{index:03d}",
                "tenant_id": TENANTS[index % 3],
                "principal_id": rng.choice(["ops", None]),
                "operation": "usage.api_call",
                "amount": f"{rng.randrange(1, 10**6)}.{rng.randrange(10**6):06d}",
                "metadata": '{"note": "' + note.replace('"', '\\"').replace("\n", "\\n") + '"}',
                "recorded_at": at,
            }
        )
    with engine.begin() as connection:
        for tenant in TENANTS:
            ensure_tenant(connection, tenant, tenant)
        connection.execute(
            text(
                "INSERT INTO billing_usage_ledger (event_id, tenant_id, principal_id, operation, "
                "message_type, handler, units, base_rate, multiplier, total_dcu, unit_price, "
                "total_cost, metadata, recorded_at, billing_period) VALUES (:event_id, "
                ":tenant_id, :principal_id, :operation, 'usage', 'test', :amount, 1, 1, "
                ":amount, 0.00008, 0.000001, CAST(:metadata AS json), :recorded_at, "
                "'2026-03-01')"
            ),
            rows,
        )
    return len(rows)


def _sessions(engine: Engine, stack: ExitStack, count: int) -> list[psycopg.Connection[Any]]:
    return [
        psycopg_connection(
            stack.enter_context(engine.connect()).execution_options(isolation_level="AUTOCOMMIT")
        )
        for _ in range(count)
    ]


def _export(
    engine: Engine, directory: Path, sessions: int, export_format: ExportFormat, tenant: str | None
) -> dict[str, bytes]:
    with ExitStack() as stack:
        main, *helpers = _sessions(engine, stack, sessions)
        export_period(
            main,
            PERIOD,
            directory,
            export_format=export_format,
            currency="USD",
            tenant_id=tenant,
            helpers=helpers,
        )
    assert verify_export(directory).ok
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def _ranges(engine: Engine, streams: int, tenant: str | None) -> int:
    with ExitStack() as stack:
        (session,) = _sessions(engine, stack, 1)
        return len(key_ranges(session, PERIOD, tenant, streams))


@pytest.mark.parametrize("export_format", [ExportFormat.CSV, ExportFormat.PARQUET])
def test_an_export_in_several_sessions_is_the_bytes_of_one(
    engine: Engine, spread_ledger: int, tmp_path: Path, export_format: ExportFormat
) -> None:
    assert _ranges(engine, 3, None) == 3  # the rows are really split three ways
    one = _export(engine, tmp_path / "one", 1, export_format, None)
    for sessions in (2, 3):
        assert _export(engine, tmp_path / f"s{sessions}", sessions, export_format, None) == one
    if export_format is ExportFormat.CSV:
        rows = list(csv.DictReader(io.StringIO(one[f"ledger-{PERIOD:%Y-%m}.csv"].decode())))
        # Every row once, in the export's order (tenant, time, event id).
        assert sorted(row["event_id"] for row in rows) == [
            f"spread-{index:03d}" for index in range(spread_ledger)
        ]
        keys = [(row["tenant_id"], row["recorded_at"], row["event_id"]) for row in rows]
        assert keys == sorted(keys)


def test_one_tenants_export_split_by_day_is_the_bytes_of_one(
    engine: Engine, spread_ledger: int, tmp_path: Path
) -> None:
    assert _ranges(engine, 3, "globex") == 3  # one tenant: the cuts fall between its days
    one = _export(engine, tmp_path / "one", 1, ExportFormat.CSV, "globex")
    assert _export(engine, tmp_path / "three", 3, ExportFormat.CSV, "globex") == one
    text_of = one[f"ledger-{PERIOD:%Y-%m}.csv"].decode()
    assert text_of.count("spread-") == spread_ledger // 3
    assert "acme" not in text_of


def test_a_failed_range_of_a_parquet_export_raises_its_own_error_and_leaves_nothing(
    engine: Engine, spread_ledger: int, tmp_path: Path
) -> None:
    """The Parquet encoder reads the copy through a pipe: when a range's session fails, the
    export raises that failure (not the encoder's view of a cut-off pipe) and leaves no file."""
    with ExitStack() as stack:
        main, helper = _sessions(engine, stack, 2)
        helper.close()
        with pytest.raises(psycopg.OperationalError, match="connection is closed"):
            export_period(
                main,
                PERIOD,
                tmp_path / "out",
                export_format=ExportFormat.PARQUET,
                currency="USD",
                helpers=[helper],
            )
    assert list(tmp_path.iterdir()) == []
