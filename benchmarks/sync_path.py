"""Change -> ledger through the sync path as `up` runs it, for `benchmarks/ledger.py --only
sync`: the CES consumer and sync workers serving side by side (Neo4j off, exactly once), with
the parts measured apart so that the bottleneck shows.

`up` runs the CES consumer and one sync worker as threads of its process; more workers run as
`hartonomous sync` processes (docs/scale-out.md). Here each is a process of its own (spawned,
its session open before the clock), with the product's batch size (`DEFAULT_BATCH_SIZE`).
Each measurement uses a new tenant whose files (an atom and its holding in one transaction,
as ingestion commits: two row changes, one billed holding) are committed before the clock:

- **pipeline**: the CES consumer (`CesConsumer.run`) starts capturing at the clock's start
  while the worker processes (`SyncWorker.run`) already serve; the clock stops when the
  ledger holds every holding's row and the queue is empty (polled every 10 ms). Events/s
  counts row changes (each becomes one event); ledger rows/s the billed ones.
- **capture alone**: the CES consumer draining the same number of committed changes onto the
  broker (`CesConsumer.drain`, this process).
- **sync alone**: the worker processes draining those queued events (`SyncWorker.drain`),
  from the moment every worker holds its session.

Inside every worker process the time of each part of a batch is summed (wrappers around the
worker's own functions): the claim (`receive`), the decisions (`prepare` and `decide`:
parsing, policy, throttle, meter), the SQL graph (deleted sources, `write_batch`), the
ledger insert (`write_entries`), `complete`, the sync counters, and the commit (a batch's
time outside its transaction's body); the rest of the process's wall time is waiting.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
from benchmarks.transports import ingest_one

from hartonomous.cdc import CesConsumer, prepare_capture
from hartonomous.config import Settings
from hartonomous.db.connection import libpq_url

# The parts of a batch, in the order they run, and the functions whose time each sums:
# (module, attribute path, part).
_PARTS = (
    ("hartonomous.messaging.broker", "Broker.receive", "receive"),
    ("hartonomous.sync.worker", "SyncHandler._prepare", "decide"),
    ("hartonomous.sync.worker", "SyncHandler._decide", "decide"),
    ("hartonomous.sync.worker", "drop_deleted_sources", "graph"),
    ("hartonomous.sync.worker", "write_batch", "graph"),
    ("hartonomous.sync.worker", "write_entries", "ledger write"),
    ("hartonomous.messaging.broker", "Broker.complete", "complete"),
    ("hartonomous.sync.worker", "SyncHandler._count", "counters"),
    ("hartonomous.sync.worker", "SyncHandler.handle", "batch"),
    ("hartonomous.sync.worker", "SyncHandler._apply", "transaction body"),
)
SHOWN = ("receive", "decide", "graph", "ledger write", "complete", "counters")


def _instrument(times: Counter[str]) -> None:
    """Wrap each function of `_PARTS` so that its calls add their seconds to ``times``."""
    import importlib

    def timed(function: Callable[..., Any], part: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                times[part] += time.perf_counter() - started

        return wrapper

    for module_name, path, part in _PARTS:
        owner: Any = importlib.import_module(module_name)
        *outer, name = path.split(".")
        for step in outer:
            owner = getattr(owner, step)
        setattr(owner, name, timed(getattr(owner, name), part))


def _worker(url: str, batch: int, signals: tuple[Any, Any, Any, Any], serve: bool) -> None:
    """A sync worker process: serve (`run`) from ``go`` until ``stop``, or drain once after
    ``go``; puts (its parts' seconds, its wall seconds) on ``results``. ``signals`` is
    (ready, go, stop, results)."""
    ready, go, stop, results = signals
    times: Counter[str] = Counter()
    _instrument(times)
    from hartonomous.sync.worker import SyncWorker

    worker = SyncWorker(url, Settings(), batch_size=batch)
    worker.connection()
    ready.release()
    go.wait()
    started = time.perf_counter()
    if serve:
        done = threading.Event()
        threading.Thread(target=lambda: (stop.wait(), done.set()), daemon=True).start()
        worker.run(done)  # closes the worker
    else:
        try:
            worker.drain()
        finally:
            worker.close()
    results.put((dict(times), time.perf_counter() - started))


def _capture(url: str, signals: tuple[Any, Any, Any, Any]) -> None:
    """The CES consumer process: serves from ``go`` until ``stop``."""
    ready, go, stop, _ = signals
    consumer = CesConsumer(url, Settings())
    consumer.prepare()
    ready.release()
    go.wait()
    done = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), done.set()), daemon=True).start()
    consumer.run(done)


def _commit_files(conn: psycopg.Connection[Any], tenant: str, files: int) -> None:
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s)", (tenant, tenant))
    job = uuid.uuid4()
    conn.execute("INSERT INTO ingestion_jobs (tenant_id, job_id) VALUES (%s, %s)", (tenant, job))
    for n in range(files):
        ingest_one(conn, tenant, job, n)


_STATE = """
SELECT (SELECT count(*) FROM billing_usage_ledger WHERE tenant_id = %s),
       (SELECT count(*) FROM broker_messages)
"""


def _state(conn: psycopg.Connection[Any], tenant: str) -> tuple[int, int]:
    row = conn.execute(_STATE, (tenant,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _start(
    url: str, workers: int, batch: int, *, serve: bool, capture: bool
) -> tuple[Any, Any, Any, list[Any]]:
    """Start ``workers`` worker processes (and the CES consumer's when ``capture``); return
    once each holds its session: (go, stop, results, processes)."""
    context = mp.get_context("spawn")
    signals = (context.Semaphore(0), context.Event(), context.Event(), context.Queue())
    ready, go, stop, results = signals
    processes = [
        context.Process(target=_worker, args=(url, batch, signals, serve)) for _ in range(workers)
    ]
    if capture:
        processes.append(context.Process(target=_capture, args=(url, signals)))
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    return go, stop, results, processes


def measure(url: str, label: str, files: int, workers: int, batch: int) -> dict[str, float]:
    """One pipeline run and one run of the parts alone with ``workers`` worker processes;
    prints them and returns the figures (events/s)."""
    url = libpq_url(url)
    prepare_capture(url, Settings())
    figures: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        # Pipeline: capture and sync serving side by side.
        tenant = f"{label}-pipe"
        _commit_files(conn, tenant, files)
        go, stop, results, processes = _start(url, workers, batch, serve=True, capture=True)
        load = os.getloadavg()[0]
        try:
            started = time.perf_counter()
            go.set()
            while _state(conn, tenant) != (files, 0):
                time.sleep(0.01)
            seconds = time.perf_counter() - started
        finally:
            stop.set()
            parts = [results.get() for _ in range(workers)]
            for process in processes:
                process.join()
        events = 2 * files + 1  # the job's row, then an atom and a holding per file
        figures["pipeline"] = events / seconds
        print(
            f"  pipeline ({workers} worker process(es) + the CES consumer serving): "
            f"{events / seconds:,.0f} events/s, {files / seconds:,.0f} ledger rows/s "
            f"({events} events, {files} billed, {seconds:.2f} s; load {load:.2f})"
        )
        _print_parts(parts, seconds)

        # The parts alone: capture, then sync.
        tenant = f"{label}-parts"
        _commit_files(conn, tenant, files)
        consumer = CesConsumer(url, Settings())
        try:
            load = os.getloadavg()[0]
            started = time.perf_counter()
            captured = consumer.drain()
            capture = time.perf_counter() - started
        finally:
            consumer.close()
        figures["capture"] = captured / capture
        print(
            f"  capture alone (CES consumer drain onto the broker): {captured / capture:,.0f} "
            f"events/s ({captured} in {capture:.2f} s; load {load:.2f})"
        )
        go, stop, results, processes = _start(url, workers, batch, serve=False, capture=False)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        go.set()
        parts = [results.get() for _ in range(workers)]
        seconds = time.perf_counter() - started
        for process in processes:
            process.join()
        billed, queued = _state(conn, tenant)
        if billed != files or queued:
            raise SystemExit(f"benchmark run is wrong: billed {billed} of {files}, {queued} left")
        figures["sync"] = captured / seconds
        print(
            f"  sync alone ({workers} worker process(es) draining the queue): "
            f"{captured / seconds:,.0f} events/s, {files / seconds:,.0f} ledger rows/s "
            f"({seconds:.2f} s; load {load:.2f})"
        )
        _print_parts(parts, seconds)
    return figures


def _print_parts(parts: list[tuple[dict[str, float], float]], seconds: float) -> None:
    """The workers' summed part seconds, and the share of their summed wall time."""
    times: Counter[str] = Counter()
    wall = 0.0
    for part_times, part_wall in parts:
        times.update(part_times)
        wall += part_wall
    commit = times["batch"] - times["transaction body"]
    inside = sum(times[name] for name in SHOWN if name != "receive")
    other = times["transaction body"] - inside
    waiting = wall - times["batch"] - times["receive"]
    shown = [(name, times[name]) for name in SHOWN]
    shown += [("other in the batch", other), ("commit", commit), ("waiting", waiting)]
    text = ", ".join(f"{name} {value:.2f} s ({value / wall:.0%})" for name, value in shown)
    print(f"    in the worker(s), {wall:.2f} s of wall time summed: {text}")
