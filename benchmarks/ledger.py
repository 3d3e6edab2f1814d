"""Ledger throughput: billed events/s through the sync path and straight into the ledger (with
and without the rollup trigger, same run), `ledger report` latency over a large ledger, and
export rows/s (CSV and Parquet). Targets (issue 14): ≥ 5,000 events/s, report over 1,000,000
rows ≤ 500 ms, export ≥ 200,000 rows/s. The usage-event endpoint is not built yet.

Uses its own embedded PostgreSQL in a temporary directory.

    .venv/bin/python benchmarks/ledger.py [--rows 1000000] [--sync-files 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hartonomous.billing.export import ExportFormat, export_period
from hartonomous.billing.ledger import LedgerEntry, write_entries
from hartonomous.billing.meter import UsageRecord
from hartonomous.billing.report import ReportGrouping, usage_report
from hartonomous.config import Settings
from hartonomous.db import EmbeddedPostgres, upgrade
from hartonomous.db.connection import libpq_url

SIX = Decimal("0.000001")
OPERATIONS = [f"usage.operation_{n}" for n in range(12)]
TENANTS = [f"tenant-{n}" for n in range(50)]
BATCH = 5000


def _sync_benchmark() -> object:
    """benchmarks/sync.py as a module: its change → ledger measurement is the sync path."""
    spec = importlib.util.spec_from_file_location("sync_bench", Path(__file__).with_name("sync.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(rng: random.Random, count: int) -> list[UsageRecord]:
    records = []
    for _ in range(count):
        units = Decimal(rng.randrange(1, 5_000_000)) * SIX
        dcu = (units * Decimal("0.0105")).quantize(SIX)
        records.append(
            UsageRecord(
                tenant_id=rng.choice(TENANTS),
                principal_id=f"p{rng.randrange(20)}",
                operation=rng.choice(OPERATIONS),
                message_type="io.hartonomous.benchmark",
                handler="benchmark",
                units=units,
                base_rate=Decimal("0.0105"),
                multiplier=Decimal(1),
                unit_price=Decimal("0.00008"),
                total_dcu=dcu,
                total_cost=(dcu * Decimal("0.00008")).quantize(SIX),
                metadata={},
            )
        )
    return records


def _write(conn: psycopg.Connection[Any], prefix: str, records: list[UsageRecord]) -> float:
    started = time.perf_counter()
    for start in range(0, len(records), BATCH):
        entries = [
            LedgerEntry(f"{prefix}-{start + n}", record, None)
            for n, record in enumerate(records[start : start + BATCH])
        ]
        write_entries(conn, entries)
    return time.perf_counter() - started


_TRIGGER = "ALTER TABLE billing_usage_ledger {} TRIGGER billing_usage_ledger_rollup"


def measure_inserts(conn: psycopg.Connection[Any], rng: random.Random, rows: int) -> None:
    for tenant in TENANTS:
        conn.execute(
            "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s)", (tenant, tenant)
        )
    sample = _records(rng, 50_000)
    with_trigger = _write(conn, "with", sample)
    conn.execute(_TRIGGER.format("DISABLE"))
    without = _write(conn, "without", sample)
    conn.execute(_TRIGGER.format("ENABLE"))
    conn.execute("DELETE FROM billing_usage_ledger WHERE event_id LIKE 'without-%'")
    print(
        f"ledger inserts ({BATCH} a statement): {len(sample) / with_trigger:,.0f} rows/s "
        f"with the rollup trigger, {len(sample) / without:,.0f} without "
        f"(trigger costs {with_trigger / without:.2f}x)"
    )
    loading = _write(conn, "bulk", _records(rng, rows - len(sample)))
    print(f"loaded {rows:,} ledger rows in {loading:.1f} s")
    conn.execute("VACUUM ANALYZE billing_usage_ledger")
    conn.execute("VACUUM ANALYZE billing_usage_rollup")
    count = conn.execute("SELECT count(*) FROM billing_usage_rollup").fetchone()
    print(f"rollup rows: {count[0] if count else '?'}")


def measure_reports(engine: Engine, rows: int) -> None:
    today = datetime.now(UTC).date()
    since, until = today - timedelta(days=31), today + timedelta(days=1)
    for groups in (
        (ReportGrouping.TENANT,),
        (ReportGrouping.OPERATION, ReportGrouping.DAY),
        (ReportGrouping.TENANT, ReportGrouping.PRINCIPAL, ReportGrouping.OPERATION),
    ):
        timings = []
        with engine.connect() as connection:
            for _ in range(7):
                started = time.perf_counter()
                report = usage_report(
                    connection, since=since, until=until, group_by=groups, tenant_id=None
                )
                timings.append(time.perf_counter() - started)
        assert report.total.row_count >= rows
        names = "+".join(g.value for g in groups)
        print(
            f"ledger report over {report.total.row_count:,} rows by {names}: "
            f"p50 {statistics.median(timings) * 1000:.1f} ms ({len(report.rows)} lines; "
            "target <= 500 ms)"
        )


def measure_exports(url: str, root: Path) -> None:
    period = datetime.now(UTC).date().replace(day=1)
    for export_format in (ExportFormat.CSV, ExportFormat.PARQUET):
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            manifest = export_period(
                conn,
                period,
                root / f"export-{export_format.value}",
                export_format=export_format,
                currency="USD",
            )
            seconds = time.perf_counter() - started
        print(
            f"export {export_format.value}: {manifest.row_count / seconds:,.0f} rows/s "
            f"({manifest.row_count:,} rows in {seconds:.1f} s; target >= 200,000)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sync-files", type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-ledger-"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg")
    server.start()
    try:
        engine = create_engine(server.url)
        upgrade(engine)
        url = libpq_url(server.url)
        sync = _sync_benchmark()
        events, seconds = sync.end_to_end(  # type: ignore[attr-defined]
            server.url, Settings(), "bench-sync", args.sync_files
        )
        print(
            f"sync path (change -> ledger, Neo4j off): {events / seconds:,.0f} events/s "
            f"({events} events in {seconds:.2f} s; target >= 5,000)"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            measure_inserts(conn, random.Random(1), args.rows)  # noqa: S311 - benchmark data
        measure_reports(engine, args.rows)
        measure_exports(url, root)
        print("usage events endpoint (POST /v1/usage-events): not built yet")
        engine.dispose()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
