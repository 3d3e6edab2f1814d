"""Ledger throughput: change -> ledger events/s through the sync path as `up` runs it (a CES
consumer process and 1 or 2 sync worker processes serving side by side, with capture and sync
also measured alone and each batch's parts timed inside the workers: benchmarks/sync_path.py;
`--rounds`), billed events/s through the usage-event endpoint
(`POST /v1/usage-events` → broker → sync worker → ledger, exactly once, Neo4j off; end to end
both as a sequential split, everything accepted then billed by one worker, and as `up` runs
it, sync worker processes billing while the events are accepted, with 1 and
`--usage-workers` processes) and straight
into the ledger (with and without the rollup trigger, same run), `ledger report` latency over a
large ledger (`--report-rows`: rows loaded with one INSERT … generate_series, not through the
sync path), and export rows/s (CSV and Parquet). Targets (issue 14): ≥ 5,000 events/s, report
over 1,000,000 rows ≤ 500 ms, export ≥ 200,000 rows/s.

Uses its own embedded PostgreSQL in a temporary directory.

    .venv/bin/python benchmarks/ledger.py [--rows 1000000] [--sync-files 2000]
    .venv/bin/python benchmarks/ledger.py --only usage --only report --report-rows 1000000
    .venv/bin/python benchmarks/ledger.py --only export --rows 1000000 --export-runs 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hartonomous.api import create_app
from hartonomous.billing.configuration import configuration_from_settings
from hartonomous.billing.export import ExportFormat, export_period
from hartonomous.billing.export_streams import stream_count
from hartonomous.billing.ledger import LedgerEntry, write_entries
from hartonomous.billing.meter import UsageRecord, measure_usage
from hartonomous.billing.report import ReportGrouping, usage_report
from hartonomous.config import Settings
from hartonomous.db import EmbeddedPostgres, head_revision, upgrade
from hartonomous.db.connection import libpq_url
from hartonomous.json_types import exact_dumps, exact_loads
from hartonomous.security import create_api_key, ensure_principal, ensure_tenant
from hartonomous.services import Platform
from hartonomous.services.usage_events import submit_usage_events
from hartonomous.sync.worker import DEFAULT_BATCH_SIZE, SyncWorker

SIX = Decimal("0.000001")
OPERATIONS = [f"usage.operation_{n}" for n in range(12)]
TENANTS = [f"tenant-{n}" for n in range(50)]
BATCH = 5000


def measure_sync_path(url: str, files: int, rounds: int) -> None:
    """Change -> ledger as `up` runs it (benchmarks/sync_path.py), with 1 and 2 sync worker
    processes, ``rounds`` times each, alternating; the best of each."""
    from benchmarks import sync_path

    print(
        f"sync path, change -> ledger (Neo4j off, exactly once), {files} files a run, "
        f"batches of {DEFAULT_BATCH_SIZE}:"
    )
    best: dict[tuple[int, str], float] = {}
    for round_ in range(rounds):
        for workers in (1, 2):
            print(f" round {round_ + 1}, {workers} worker process(es):")
            label = f"sp{round_}w{workers}"
            figures = sync_path.measure(url, label, files, workers, DEFAULT_BATCH_SIZE)
            for name, rate in figures.items():
                best[workers, name] = max(best.get((workers, name), 0.0), rate)
    for workers in (1, 2):
        print(
            f"sync path, best of {rounds}, {workers} worker process(es): change -> ledger "
            f"{best[workers, 'pipeline']:,.0f} events/s (capture alone "
            f"{best[workers, 'capture']:,.0f}, sync alone {best[workers, 'sync']:,.0f}; "
            "target >= 5,000)"
        )


# Every operation at the rate the records used to be written with by hand.
_PLAN = configuration_from_settings(
    Settings.model_validate(
        {"billing": {"operation_rates": dict.fromkeys(OPERATIONS, "0.0105")}}
    ).billing
)


def _records(rng: random.Random, count: int) -> list[UsageRecord]:
    """Priced by the meter, so each row carries the metadata a billed event has."""
    records = []
    for _ in range(count):
        record = measure_usage(
            _PLAN,
            {"usage_units": Decimal(rng.randrange(1, 5_000_000)) * SIX},
            operation=rng.choice(OPERATIONS),
            tenant_id=rng.choice(TENANTS),
            principal_id=f"p{rng.randrange(20)}",
            message_type="io.hartonomous.benchmark",
            handler="benchmark",
        )
        assert record is not None
        records.append(record)
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
    """Export rows/s, against PostgreSQL's own COPY of the same rows to this process (one
    session), both in the same run: CSV and Parquet in ``stream_count()`` sessions (what
    `ledger export` uses), and CSV in the other of one or two sessions."""
    period = datetime.now(UTC).date().replace(day=1)
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        copied = 0
        plain = "COPY (SELECT * FROM billing_usage_ledger WHERE billing_period = %s) TO STDOUT"
        with conn.cursor().copy(plain, (period,)) as stream:
            for _ in stream:
                copied += 1
        floor = copied / (time.perf_counter() - started)
    print(f"baseline: COPY of the period's rows to this process: {floor:,.0f} rows/s")
    streams = stream_count()
    for export_format, sessions in (
        (ExportFormat.CSV, streams),
        (ExportFormat.CSV, 2 if streams == 1 else 1),
        (ExportFormat.PARQUET, streams),
    ):
        with ExitStack() as stack:
            conn, *helpers = (
                stack.enter_context(psycopg.connect(url, autocommit=True)) for _ in range(sessions)
            )
            started = time.perf_counter()
            manifest = export_period(
                conn,
                period,
                root / f"export-{export_format.value}-{sessions}",
                export_format=export_format,
                currency="USD",
                helpers=helpers,
            )
            seconds = time.perf_counter() - started
        shutil.rmtree(root / f"export-{export_format.value}-{sessions}")
        rate = manifest.row_count / seconds
        print(
            f"export {export_format.value} in {sessions} session(s): {rate:,.0f} rows/s "
            f"({manifest.row_count:,} rows in {seconds:.2f} s; {rate / floor:.2f}x the COPY "
            "alone; target >= 200,000)"
        )


USAGE_OPERATION = "usage.api_call"
USAGE_BATCH = 1000


def _usage_batches(prefix: str, count: int, moment: str) -> list[list[dict[str, Any]]]:
    return [
        [
            {
                "specversion": "1.0",
                "id": f"{prefix}{start + n}",
                "source": "//bench/gateway",
                "type": USAGE_OPERATION,
                "time": moment,
                "data": {"units": f"{(start + n) % 97 + 1}.25"},
            }
            for n in range(min(USAGE_BATCH, count - start))
        ]
        for start in range(0, count, USAGE_BATCH)
    ]


def _billing_worker(url: str, settings: Settings, ready: Any, stop: Any) -> None:
    """A sync worker process serving (`SyncWorker.run`) until ``stop`` is set; releases
    ``ready`` once it holds its session."""
    worker = SyncWorker(url, settings, batch_size=USAGE_BATCH)
    worker.connection()
    done = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), done.set()), daemon=True).start()
    ready.release()
    worker.run(done)


def measure_usage_events(  # noqa: PLR0915 - one scenario, told in order
    engine: Engine, url: str, count: int, workers: int
) -> None:
    """Usage events billed exactly once, two ways in: through `POST /v1/usage-events` (HTTP)
    and through the service call the route makes (`submit_usage_events`).

    Sequential split: all events accepted first, then one sync worker (this process) bills
    the queue; events/s from the first submission until the last event is billed, with the
    accepting and billing rates. Concurrent, as `up` runs it: sync worker processes (1 and
    ``workers``) serve the queue while the events are accepted, so billing overlaps
    acceptance and uses another core; events/s from the first submission until the ledger
    holds every event (polled every 10 ms). Then the HTTP batches again, which must all be
    duplicates and bill nothing. Baseline (same process): the same number of priced entries
    written straight into the ledger (`write_entries`), the floor the billing path builds on."""
    settings = Settings.model_validate(
        {
            "security": {
                "rate_limits": [{"name": "bench", "scope": "tenant", "permit_limit": 10**9}]
            },
            "billing": {"operation_rates": {USAGE_OPERATION: "0.5"}},
        }
    )
    with engine.begin() as connection:
        ensure_tenant(connection, "usage-bench", "usage-bench")
        ensure_principal(connection, "usage-bench", "svc", "svc", "user")
        token = create_api_key(connection, "usage-bench", "svc", "bench")
    platform = Platform(engine=engine, settings=settings, migrations_head=head_revision())
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/cloudevents-batch+json",
    }
    moment = datetime.now(UTC).isoformat()
    http_bodies = [exact_dumps(batch) for batch in _usage_batches("h", count, moment)]
    # The route hands the service the batch parsed with exact_loads: so does this.
    service_batches = [exact_loads(exact_dumps(b)) for b in _usage_batches("s", count, moment)]
    worker = SyncWorker(server_url(engine), settings, batch_size=1000)

    def billed() -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM billing_usage_ledger WHERE tenant_id = 'usage-bench'"
            ).fetchone()
        return int(row[0]) if row else 0

    def report(way: str, accepted: int, posted: float, billing: float) -> None:
        assert accepted == count, (way, accepted, count)
        print(
            f"usage events through {way} -> broker -> sync -> ledger (Neo4j off): "
            f"{count / (posted + billing):,.0f} events/s end to end ({count:,} events in "
            f"{posted + billing:.2f} s: accepting {count / posted:,.0f}/s, billing the queue "
            f"{count / billing:,.0f}/s = {count / billing / baseline:.2f}x the ledger write "
            "alone; target >= 5,000)"
        )

    baseline = _ledger_write_baseline(url, settings, count)
    with TestClient(create_app(platform)) as api:
        started = time.perf_counter()
        accepted = sum(
            int(api.post("/v1/usage-events", content=body, headers=headers).json()["accepted"])
            for body in http_bodies
        )
        posted = time.perf_counter() - started
        worker.drain()
        report("POST /v1/usage-events", accepted, posted, time.perf_counter() - started - posted)
        assert billed() == count

        started = time.perf_counter()
        accepted = sum(
            submit_usage_events(platform, "usage-bench", "svc", batch).count("accepted")
            for batch in service_batches
        )
        posted = time.perf_counter() - started
        worker.drain()
        report("submit_usage_events", accepted, posted, time.perf_counter() - started - posted)
        assert billed() == 2 * count

        def concurrently(way: str, prefix: str, processes: int) -> None:
            """Accept ``count`` new events while ``processes`` sync worker processes bill."""
            context = mp.get_context("spawn")
            ready, stop = context.Semaphore(0), context.Event()
            serving = [
                context.Process(target=_billing_worker, args=(url, settings, ready, stop))
                for _ in range(processes)
            ]
            for process in serving:
                process.start()
            for _ in serving:
                ready.acquire()
            before = billed()
            try:
                started = time.perf_counter()
                if way == "HTTP":
                    accepted = sum(
                        int(
                            api.post(
                                "/v1/usage-events", content=exact_dumps(b), headers=headers
                            ).json()["accepted"]
                        )
                        for b in _usage_batches(prefix, count, moment)
                    )
                else:
                    accepted = sum(
                        submit_usage_events(platform, "usage-bench", "svc", batch).count("accepted")
                        for batch in [
                            exact_loads(exact_dumps(b))
                            for b in _usage_batches(prefix, count, moment)
                        ]
                    )
                posted = time.perf_counter() - started
                while billed() < before + count:
                    time.sleep(0.01)
                seconds = time.perf_counter() - started
            finally:
                stop.set()
                for process in serving:
                    process.join()
            assert accepted == count, (way, accepted, count)
            assert billed() == before + count
            print(
                f"usage events through {way}, billed while accepted by {processes} sync "
                f"worker process(es) (as `up` runs): {count / seconds:,.0f} events/s end to "
                f"end ({count:,} events in {seconds:.2f} s; accepting took {posted:.2f} s; "
                f"load average {os.getloadavg()[0]:.2f}; target >= 5,000)"
            )

        concurrently("HTTP", "hc", workers)
        concurrently("submit_usage_events", "sc1", 1)
        concurrently("submit_usage_events", "sc2", workers)

        again = time.perf_counter()
        duplicates = sum(
            int(api.post("/v1/usage-events", content=body, headers=headers).json()["duplicate"])
            for body in http_bodies
        )
        worker.drain()
        resent = time.perf_counter() - again
    worker.close()
    assert duplicates == count
    assert billed() == 5 * count  # the resend billed nothing
    print(f"resent over HTTP as duplicates: {count / resent:,.0f}/s, billed once each")


def _ledger_write_baseline(url: str, settings: Settings, count: int) -> float:
    """Rows/s of `write_entries` for ``count`` priced usage-event entries (rolled back)."""
    configuration = configuration_from_settings(settings.billing)
    entries = []
    for n in range(count):
        record = measure_usage(
            configuration,
            {"usage_units": Decimal(n % 97 + 1) + Decimal("0.25")},
            operation=USAGE_OPERATION,
            tenant_id="usage-bench",
            principal_id="svc",
            message_type=USAGE_OPERATION,
            handler="usage_events",
        )
        assert record is not None
        entries.append(LedgerEntry(f"baseline-{n}", record, None, datetime.now(UTC)))
    # One transaction rolled back at the end (each write's own becomes a savepoint in it).
    with psycopg.connect(url) as conn, conn.transaction(force_rollback=True):
        started = time.perf_counter()
        for start in range(0, count, USAGE_BATCH):
            write_entries(conn, entries[start : start + USAGE_BATCH])
        seconds = time.perf_counter() - started
    print(
        f"baseline: ledger write alone (write_entries, {USAGE_BATCH} a call): "
        f"{count / seconds:,.0f} rows/s"
    )
    return count / seconds


def server_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


# One statement: the rollup trigger sees the whole load as one transition table. The rows'
# times rise with `g` from `since` to `until`, so the heap holds them in time order (as the
# sync worker writes them) with the 50 tenants interleaved; the metadata is the meter's JSON
# for such a row (about 470 characters).
_FAST_LOAD = """
INSERT INTO billing_usage_ledger (
    event_id, tenant_id, principal_id, operation, message_type, handler, units, base_rate,
    multiplier, total_dcu, unit_price, total_cost, metadata, recorded_at, billing_period)
SELECT 'fast-' || g, 'tenant-' || (g %% 50), 'p' || (g %% 20), op,
       'io.hartonomous.benchmark', 'benchmark', u, 0.0105, 1, dcu, 0.00008,
       round(dcu * 0.00008, 6),
       ('{"operation":"' || op || '","handler":"benchmark","message_type":'
        '"io.hartonomous.benchmark","units":' || u || ',"base_rate_dcu":0.0105,'
        '"multiplier":1,"unit_price":0.00008,"total_dcu_estimate":' || dcu
        || ',"total_cost_estimate":' || round(dcu * 0.00008, 6) || ',"rate_plan_id":null,'
        '"rate_plan_code":"publisher_core","rate_plan_name":"Publisher Core",'
        '"allows_private_data":true,"can_query_public_corpus":true,'
        '"included_public_storage_gb":120,"included_private_storage_gb":40,'
        '"included_seat_count":25}')::json,
       t, date_trunc('month', t AT TIME ZONE 'UTC')::date
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT 'usage.operation_' || (g %% 12) AS op,
                     ((g::bigint * 7919) %% 5000000 + 1) / 1000000.0 AS u,
                     %(since)s::timestamptz
                     + (%(until)s::timestamptz - %(since)s::timestamptz) * (g::float8 / %(rows)s)
                     AS t) AS v,
     LATERAL (SELECT round(u * 0.0105, 6) AS dcu) AS d
"""


def fast_load(url: str, rows: int, since: datetime, until: datetime) -> None:
    """Load ``rows`` ledger rows recorded between ``since`` and ``until`` in one statement."""
    with psycopg.connect(url, autocommit=True) as conn:
        for tenant in TENANTS:
            conn.execute(
                "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (tenant, tenant),
            )
        started = time.perf_counter()
        conn.execute(_FAST_LOAD, {"rows": rows, "since": since, "until": until})
        loaded = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE billing_usage_ledger")
        conn.execute("VACUUM ANALYZE billing_usage_rollup")
    print(f"loaded {rows:,} ledger rows in one INSERT ... generate_series: {loaded:.1f} s")


def measure_report_rows(engine: Engine, url: str, rows: int) -> None:
    """Load ``rows`` ledger rows over the last 30 days, then time `ledger report` over them."""
    now = datetime.now(UTC)
    fast_load(url, rows, now - timedelta(days=30), now)
    measure_reports(engine, rows)


def measure_export_rows(url: str, root: Path, rows: int, runs: int) -> None:
    """Load ``rows`` ledger rows into the current period once, then measure the exports
    ``runs`` times (each against its own baseline COPY)."""
    now = datetime.now(UTC)
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    fast_load(url, rows, month, now)
    for run in range(runs):
        measure_exports(url, root / f"run-{run}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sync-files", type=int, default=2000)
    parser.add_argument("--usage-events", type=int, default=20_000)
    parser.add_argument(
        "--rounds", type=int, default=1, help="with sync: pipeline runs of each worker count"
    )
    parser.add_argument(
        "--usage-workers", type=int, default=2, help="sync worker processes, concurrent runs"
    )
    parser.add_argument(
        "--report-rows", type=int, default=0, help="with --only report: rows loaded fast"
    )
    parser.add_argument(
        "--export-runs", type=int, default=1, help="with --only export: exports of one load"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["sync", "inserts", "usage", "report", "export"],
        help="measure only these (repeat); default: all but the fast-loaded report",
    )
    args = parser.parse_args()
    parts = set(args.only or ["sync", "inserts", "usage"])
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-ledger-"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg")
    server.start()
    try:
        engine = create_engine(server.url)
        upgrade(engine)
        url = libpq_url(server.url)
        if "sync" in parts:
            measure_sync_path(server.url, args.sync_files, args.rounds)
        if "usage" in parts:
            measure_usage_events(engine, url, args.usage_events, args.usage_workers)
        if "inserts" in parts:
            with psycopg.connect(url, autocommit=True) as conn:
                measure_inserts(conn, random.Random(1), args.rows)  # noqa: S311 - benchmark data
            measure_reports(engine, args.rows)
            measure_exports(url, root)
        if "report" in parts:
            measure_report_rows(engine, url, args.report_rows or args.rows)
        if "export" in parts:
            measure_export_rows(url, root, args.rows, args.export_runs)
        engine.dispose()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
