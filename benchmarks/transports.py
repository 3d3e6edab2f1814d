"""Change -> ledger over the two transports, for `benchmarks/broker.py`: the in-database broker
and Kafka (a test Kafka 4 broker, tests/kafka_server.py) on the same PostgreSQL.

- events/s with 1 and 2 `SyncWorker` processes: the changes are captured (the CES consumer
  drains them onto the transport) before the clock; the clock runs from the moment every
  worker holds its session (and, on Kafka, the group gave each its partitions) until each
  worker's drain ended (on Kafka: the group's committed offsets reached the topic's end).
  Until the clock starts a worker takes no work: it serves its group's rebalances with
  `Transport.hold` (Kafka: its partitions paused). It used to idle with `Transport.wait`,
  which on Kafka fetches and buffers records: a worker of two that got its partitions early
  parsed its whole share (~3,000 records) before the clock, work the broker's workers do
  inside it.
- Before each run's clock the queue table is vacuumed and analysed (`VACUUM (ANALYZE)
  broker_messages`): without it a broker run inherited the dead rows of the broker's earlier
  runs (each deletes the 12,000 messages it completes) and statistics older than its queue, so
  its figure depended on the runs before it (Kafka runs leave the table empty).
- Each figure is measured in every round, the two transports one after the other (postgres,
  kafka, postgres, kafka, ...), so a change of the machine's load between rounds hits both;
  every round is printed with its ratio and the load average, then the median and the best
  of each transport. Each run drains `files` holdings (2 events each: the atom and the
  holding), several seconds of work, so the drain's end (on Kafka: the group's offsets seen
  at the end) and the start are a small part of it.
- p95 change -> ledger latency at a steady rate (500 row changes/s): a thread commits one
  file (atom + holding: two changes) per transaction at half that rate while a CES consumer
  and one worker serve (threads of this process and a worker process); the latency of the
  k-th file is the moment the ledger held k rows minus the k-th commit (ledger rows appear
  in about the order of the changes; polled every 5 ms).
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import statistics
import threading
import time
import uuid
from typing import Any

import psycopg

from hartonomous.cdc import CesConsumer, prepare_capture
from hartonomous.config import Settings
from hartonomous.db.connection import libpq_url

# A group shares a topic by whole partitions: six split evenly over 1, 2, 3 or 6 workers. With
# three, two workers got 2/3 and 1/3 of the events, and the second waited for the first
# (docs/scale-out.md, "The event flow").
TOPIC_PARTITIONS = 6


def kafka_settings(bootstrap: str, topic: str) -> Settings:
    """Settings whose transport is Kafka, on a new topic of `TOPIC_PARTITIONS` partitions."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, TOPIC_PARTITIONS, 1)]).values():
        future.result(timeout=60)
    return Settings.model_validate(
        {
            "message_broker": {
                "transport": "kafka",
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "topic": topic,
                    "consumer_group": f"{topic}-sync",
                    "session_timeout_seconds": 6,
                },
            }
        }
    )


def ingest_one(conn: psycopg.Connection[Any], tenant: str, job: uuid.UUID, n: int) -> None:
    """One file: a new text atom and its holding, in one transaction (as ingestion commits)."""
    text = f"{tenant}/{job}/{n}"
    atom = hashlib.sha256(text.encode()).digest()
    with conn.transaction():
        conn.execute(
            "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, canonical_text) "
            "VALUES (%s, 'leaf', 'text', 'paragraph', %s, %s)",
            (atom, len(text), text),
        )
        conn.execute(
            "INSERT INTO holdings (tenant_id, atom_id, source_uri, source_type, job_id) "
            "VALUES (%s, %s, %s, 'file', %s)",
            (tenant, atom, f"file:///{text}", job),
        )


def new_tenant(conn: psycopg.Connection[Any], tenant: str) -> uuid.UUID:
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s)", (tenant, tenant))
    job = uuid.uuid4()
    conn.execute("INSERT INTO ingestion_jobs (tenant_id, job_id) VALUES (%s, %s)", (tenant, job))
    return job


def billed(conn: psycopg.Connection[Any], tenant: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM billing_usage_ledger WHERE tenant_id = %s", (tenant,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _drain_worker(url: str, settings: Settings, ready: Any, go: Any, results: Any) -> None:
    from hartonomous.sync.worker import SyncWorker

    worker = SyncWorker(url, settings, batch_size=200)
    try:
        worker.connection()  # the session, and on Kafka the group's assignment
        ready.release()
        idle = threading.Event()
        while not go.is_set():  # take part in the group's rebalances, take no work (docstring)
            worker.transport.hold(0.05, idle)
        outcome = worker.drain()
        results.put((outcome.completed, outcome.billed))
    finally:
        worker.close()


def _group_settled(settings: Settings, members: int) -> bool:
    """Kafka: the group has ``members`` members, each holding a partition."""
    if settings.message_broker.transport != "kafka":
        return True
    from confluent_kafka.admin import AdminClient

    kafka = settings.message_broker.kafka
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    future = admin.describe_consumer_groups([kafka.consumer_group])[kafka.consumer_group]
    group = future.result(timeout=30)
    shares = [len(m.assignment.topic_partitions) for m in group.members]
    return len(shares) == members and all(shares) and sum(shares) == TOPIC_PARTITIONS


def throughput(url: str, settings: Settings, tenant: str, files: int, workers: int) -> float:
    """Change -> ledger events/s with ``workers`` worker processes (module docstring)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        # The changes are made before the clock: their commits need not wait for the WAL
        # flush (the same transactions and WAL records, 6,000 of them in seconds, not a minute).
        conn.execute("SET synchronous_commit TO off")
        job = new_tenant(conn, tenant)
        for n in range(files):
            ingest_one(conn, tenant, job, n)
        conn.execute("RESET synchronous_commit")
        consumer = CesConsumer(url, settings)
        try:
            events = consumer.drain()
        finally:
            consumer.close()
        # Every run starts from the same state of the queue table: the dead rows the broker's
        # earlier runs left (it deletes each message it completes: 12,000 a run) are vacuumed,
        # and its statistics include this run's queue, so a figure does not depend on the
        # runs before. (The graph and ledger tables grow alike under both transports.)
        conn.execute("VACUUM (ANALYZE) broker_messages")
        context = mp.get_context("spawn")
        ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
        processes = [
            context.Process(target=_drain_worker, args=(url, settings, ready, go, results))
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        for _ in processes:
            ready.acquire()
        deadline = time.monotonic() + 120
        while not _group_settled(settings, workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.perf_counter()
        go.set()
        completed = sum(results.get()[0] for _ in processes)
        seconds = time.perf_counter() - started
        for process in processes:
            process.join()
        if billed(conn, tenant) != files or completed < events:
            raise SystemExit(f"benchmark run is wrong: {completed} of {events} events")
    return events / seconds


def _serve_worker(url: str, settings: Settings, stop: Any) -> None:
    from hartonomous.sync.worker import SyncWorker

    worker = SyncWorker(url, settings, batch_size=200)
    done = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), done.set()), daemon=True).start()
    worker.run(done)


def latency(url: str, settings: Settings, tenant: str, per_second: int, seconds: float) -> float:
    """p95 change -> ledger latency in ms at ``per_second`` row changes/s: a file is two (its
    atom and its holding, one transaction), so files come at half that rate, and each one's
    latency is its commit to its holding's ledger row (module docstring)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        job = new_tenant(conn, tenant)
        context = mp.get_context("spawn")
        stop = context.Event()
        worker = context.Process(target=_serve_worker, args=(url, settings, stop))
        worker.start()
        ces_stop = threading.Event()
        ces = CesConsumer(url, settings)
        ces_thread = threading.Thread(target=ces.run, args=(ces_stop,))
        ces_thread.start()
        try:
            # Warm: the worker serves (joined its group) before the clock.
            ingest_one(conn, tenant, job, -1)
            while billed(conn, tenant) < 1:
                time.sleep(0.05)
            files_per_second = per_second / 2
            total = int(files_per_second * seconds)
            commits: list[float] = []
            seen: list[float] = []

            def produce() -> None:
                with psycopg.connect(libpq_url(url), autocommit=True) as writer:
                    start = time.perf_counter()
                    for n in range(total):
                        due = start + n / files_per_second
                        pause = due - time.perf_counter()
                        if pause > 0:
                            time.sleep(pause)
                        ingest_one(writer, tenant, job, n)
                        commits.append(time.perf_counter())

            producer = threading.Thread(target=produce)
            producer.start()
            with psycopg.connect(libpq_url(url), autocommit=True) as watcher:
                deadline = time.monotonic() + seconds + 120
                while len(seen) < total and time.monotonic() < deadline:
                    count = billed(watcher, tenant) - 1
                    now = time.perf_counter()
                    seen.extend([now] * (count - len(seen)))
                    time.sleep(0.005)
            producer.join()
        finally:
            ces_stop.set()
            ces_thread.join()
            stop.set()
            worker.join()
    if len(seen) < total:
        raise SystemExit(f"benchmark run is wrong: {len(seen)} of {total} changes billed")
    lags = sorted(1000 * (s - c) for s, c in zip(seen, commits, strict=True))
    return statistics.quantiles(lags, n=100)[94]


def report(url: str, kafka_bootstrap: str, files: int, rounds: int, rate: int) -> None:
    """Print the events/s of each transport with 1 and 2 workers: every round (the two
    transports one after the other) with its ratio Kafka / PostgreSQL and the load average,
    then the median and the best of ``rounds``; then the p95 latency at ``rate``."""
    prepare_capture(url, Settings())  # the slot exists before the first change
    print(
        f"change -> ledger, {files} billed holdings ({2 * files} events) per run, "
        f"{rounds} rounds alternating the transports (events/s)"
    )
    print(f"{'':46}{'postgres':>12}{'kafka':>12}{'ratio':>8}{'load':>8}")
    for workers in (1, 2):
        figures: dict[str, list[float]] = {"postgres": [], "kafka": []}
        label = f"change -> ledger, {workers} worker process(es)"
        for round_ in range(rounds):
            for transport in ("postgres", "kafka"):
                name = f"t{workers}-{round_}-{transport}"
                settings = (
                    kafka_settings(kafka_bootstrap, name) if transport == "kafka" else Settings()
                )
                figures[transport].append(throughput(url, settings, name, files, workers))
            postgres, kafka = figures["postgres"][-1], figures["kafka"][-1]
            print(
                f"{f'  round {round_ + 1}':46}{postgres:12.0f}{kafka:12.0f}"
                f"{kafka / postgres:8.2f}{os.getloadavg()[0]:8.2f}"
            )
        for summary, pick in (("median", statistics.median), ("best", max)):
            postgres, kafka = pick(figures["postgres"]), pick(figures["kafka"])
            print(f"{f'{label}, {summary}':46}{postgres:12.0f}{kafka:12.0f}{kafka / postgres:8.2f}")
    for transport in ("postgres", "kafka"):
        name = f"lat-{transport}"
        settings = kafka_settings(kafka_bootstrap, name) if transport == "kafka" else Settings()
        p95 = latency(url, settings, name, rate, 10.0)
        print(
            f"p95 change -> ledger latency at {rate} changes/s, {transport}: {p95:.0f} ms "
            f"(target <= 500; load {os.getloadavg()[0]:.2f})"
        )
