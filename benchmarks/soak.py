"""Soak: ingestion, search and sync together through a real `up`, for a set time.

Starts `hartonomous up` (embedded PostgreSQL in a temporary data directory) and, from this
process, uploads one small text file per job (waiting for each job) and runs hybrid searches,
each in its own threads, while `up`'s CES consumer and sync worker capture, project and bill
every change. Prints one line per minute:

- throughput: files ingested, searches answered, events synced (sync_counters outcomes, delays
  not counted);
- queue lag: the broker's depth and its oldest message's age (the highest of the minute's
  samples, taken every 2 s);
- p95 latencies: ingest (upload to the job's `completed`, one file per job), search (request to
  answer), change to ledger (a holding's transaction start to its ledger row's `recorded_at`);
- RSS (MB) of `up`, of the PostgreSQL backends (sum, and the sum of their private memory: RSS
  also counts the shared buffers a backend has touched, which grows as the cache warms) and of
  this client.

At the end, PASS or FAIL with the rules:
- lag bounded: in the last minute the highest depth is at most twice the first minute's (or
  50 messages, whichever is more) and in every minute the oldest message is under 60 s old;
- memory: `up`'s RSS, the backends' private memory and the client's RSS each grow less than
  10 % from the end of minute 2 to the end of the run (minute 1 is warm-up: models load, caches
  fill).

Prints the load average at the start and per minute: the machine may be shared.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--ingesters 2] [--searchers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text

from hartonomous.db import EmbeddedPostgres
from hartonomous.security import create_api_key, ensure_principal, ensure_tenant

SAMPLE_SECONDS = 2.0
MAX_OLDEST_AGE_SECONDS = 60.0
DEPTH_FLOOR = 50
RSS_GROWTH_LIMIT = 0.10
WORDS = (
    "river",
    "mountain",
    "ledger",
    "atom",
    "graph",
    "vector",
    "search",
    "tenant",
    "invoice",
    "model",
    "tensor",
    "archive",
    "backup",
    "restore",
    "replica",
    "stream",
    "event",
    "queue",
    "broker",
    "worker",
    "cache",
    "index",
    "lexical",
    "semantic",
    "provenance",
    "lineage",
    "holding",
    "chunk",
    "embedding",
    "cosine",
    "token",
    "billing",
    "usage",
    "period",
)


@dataclass
class Minute:
    """What happened in one minute of the run."""

    files: int = 0
    searches: int = 0
    failures: int = 0
    ingest_seconds: list[float] = field(default_factory=list)
    search_seconds: list[float] = field(default_factory=list)
    depth: int = 0
    oldest_age: float = 0.0


class Recorder:
    """Thread-safe: what the workers did, by minute of the run."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.lock = threading.Lock()
        self.minutes: dict[int, Minute] = {}

    def minute(self, at: float | None = None) -> Minute:
        index = int(((time.monotonic() if at is None else at) - self.started) // 60)
        return self.minutes.setdefault(index, Minute())

    def ingested(self, seconds: float) -> None:
        with self.lock:
            minute = self.minute()
            minute.files += 1
            minute.ingest_seconds.append(seconds)

    def searched(self, seconds: float) -> None:
        with self.lock:
            minute = self.minute()
            minute.searches += 1
            minute.search_seconds.append(seconds)

    def failed(self) -> None:
        with self.lock:
            self.minute().failures += 1


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


def sentence(chooser: random.Random, words: int) -> str:
    return " ".join(chooser.choice(WORDS) for _ in range(words))


def ingester(
    url: str, headers: dict[str, str], seed: int, stop: threading.Event, recorder: Recorder
) -> None:
    chooser = random.Random(seed)  # noqa: S311 - workload text, not secrets
    client = httpx.Client(base_url=url, headers=headers, timeout=120)
    n = 0
    while not stop.is_set():
        n += 1
        body = "\n\n".join(sentence(chooser, 60) for _ in range(8)).encode()
        started = time.monotonic()
        try:
            sent = client.post("/v1/ingest", files=[("files", (f"s{seed}-{n}.txt", body))])
            if sent.status_code != 202:
                recorder.failed()
                continue
            location = sent.headers["location"]
            while (status := client.get(location).json()["status"]) == "running":
                time.sleep(0.05)
        except httpx.HTTPError:
            recorder.failed()
            continue
        if status == "completed":
            recorder.ingested(time.monotonic() - started)
        else:
            recorder.failed()


def searcher(
    url: str, headers: dict[str, str], seed: int, stop: threading.Event, recorder: Recorder
) -> None:
    chooser = random.Random(seed)  # noqa: S311
    client = httpx.Client(base_url=url, headers=headers, timeout=120)
    while not stop.is_set():
        started = time.monotonic()
        try:
            answer = client.post("/v1/search", json={"query": sentence(chooser, 3), "k": 10})
        except httpx.HTTPError:
            recorder.failed()
            continue
        if answer.status_code == 200:
            recorder.searched(time.monotonic() - started)
        else:
            recorder.failed()


# -- Memory ----------------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def _private_kb(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    return sum(
        int(line.split()[1])
        for line in lines
        if line.startswith(("Private_Clean:", "Private_Dirty:"))
    )


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def memory_mb(up_pid: int, data_dir: Path) -> tuple[float, float, float, float]:
    """(up RSS, backends' RSS sum, backends' private sum, client RSS) in MB."""
    postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
    backends = _children(postmaster)
    return (
        _status_kb(up_pid, "VmRSS") / 1024,
        sum(_status_kb(pid, "VmRSS") for pid in backends) / 1024,
        sum(_private_kb(pid) for pid in backends) / 1024,
        _status_kb(os.getpid(), "VmRSS") / 1024,
    )


# -- Database figures ------------------------------------------------------------------------


def queue(engine: Engine) -> tuple[int, float]:
    with engine.connect() as connection:
        depth, oldest = connection.execute(
            text(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(enqueued_at)), 0) "
                "FROM broker_messages"
            )
        ).one()
    return int(depth), float(oldest)


def synced(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT coalesce(sum(count), 0) FROM sync_counters "
                    "WHERE counter NOT LIKE 'delayed%'"
                )
            ).scalar_one()
        )


def change_to_ledger_p95(engine: Engine, since_seconds: float) -> float:
    """p95 seconds from a holding's transaction start to its ledger row, over the ledger rows
    recorded in the last ``since_seconds``."""
    with engine.connect() as connection:
        value = connection.execute(
            text(
                "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY "
                "extract(epoch FROM l.recorded_at - h.created_at)) "
                "FROM billing_usage_ledger l "
                "JOIN graph_edges g ON g.source_event_id = l.event_id "
                "JOIN holdings h "
                "ON g.edge_id = 'OWNS:holding:' || h.tenant_id || ':' || h.holding_id "
                "WHERE l.recorded_at > now() - make_interval(secs => :since)"
            ),
            {"since": since_seconds},
        ).scalar_one()
    return float("nan") if value is None else float(value)


# -- The run ---------------------------------------------------------------------------------


def start_up(data_dir: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARTONOMOUS_")}
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    env["HARTONOMOUS_LOGGING__LEVEL"] = "warning"
    # One tenant sends far more than the default 100 requests a minute.
    env["HARTONOMOUS_SECURITY__RATE_LIMITS"] = json.dumps(
        [{"name": "soak", "scope": "tenant", "permit_limit": 1_000_000_000}]
    )
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "hartonomous", "--json", "up", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=data_dir,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"up did not start: {log.read_text()[-2000:]}")
    return process, json.loads(line)["url"]


def key(engine: Engine) -> dict[str, str]:
    with engine.begin() as connection:
        ensure_tenant(connection, "soak", "Soak")
        ensure_principal(connection, "soak", "soaker", "Soaker", "user")
        token = create_api_key(connection, "soak", "soaker", "soak benchmark")
    return {"Authorization": f"Bearer {token}"}


def verdict(rows: list[tuple[Minute, tuple[float, float, float, float]]]) -> list[str]:
    """The failed rules (none: PASS)."""
    failed = []
    first_depth = rows[0][0].depth
    last_depth = rows[-1][0].depth
    if last_depth > max(2 * first_depth, DEPTH_FLOOR):
        failed.append(
            f"queue depth grew: last minute {last_depth} > max(2 x first minute "
            f"{first_depth}, {DEPTH_FLOOR})"
        )
    oldest = max(minute.oldest_age for minute, _ in rows)
    if oldest >= MAX_OLDEST_AGE_SECONDS:
        failed.append(f"oldest queued message reached {oldest:.0f} s (limit 60 s)")
    if len(rows) >= 3:
        base, end = rows[1][1], rows[-1][1]
        for index, name in ((0, "up RSS"), (2, "backends' private memory"), (3, "client RSS")):
            growth = (end[index] - base[index]) / base[index] if base[index] else 0.0
            if growth >= RSS_GROWTH_LIMIT:
                failed.append(
                    f"{name} grew {growth:.0%} from minute 2 ({base[index]:.0f} MB) to the end "
                    f"({end[index]:.0f} MB)"
                )
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--ingesters", type=int, default=2)
    parser.add_argument("--searchers", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hartonomous-soak-"))
    root.chmod(0o711)
    data_dir = root / "data"
    data_dir.mkdir()
    process, url = start_up(data_dir, root / "up.log")
    engine = create_engine(EmbeddedPostgres(data_dir).url)
    stop = threading.Event()
    try:
        headers = key(engine)
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus; up at {url}")
        print(
            f"{args.minutes} minute(s), {args.ingesters} ingester(s) (one ~3 KB text file "
            f"per job), {args.searchers} searcher(s) (hybrid, k=10)"
        )
        print(
            f"{'min':>3} {'files':>6} {'search':>6} {'synced':>6} {'fail':>4} {'depth':>5} "
            f"{'oldest s':>8} {'p95 ingest':>10} {'p95 search':>10} {'p95 ledger':>10} "
            f"{'up MB':>6} {'pg MB':>6} {'pg priv':>7} {'cli MB':>6} {'load':>5}"
        )
        recorder = Recorder(time.monotonic())
        workers = [
            threading.Thread(target=ingester, args=(url, headers, n, stop, recorder))
            for n in range(args.ingesters)
        ] + [
            threading.Thread(target=searcher, args=(url, headers, 1000 + n, stop, recorder))
            for n in range(args.searchers)
        ]
        for worker in workers:
            worker.start()
        rows: list[tuple[Minute, tuple[float, float, float, float]]] = []
        synced_before = synced(engine)
        for index in range(args.minutes):
            minute_end = recorder.started + 60 * (index + 1)
            while (now := time.monotonic()) < minute_end:
                depth, oldest = queue(engine)
                with recorder.lock:
                    minute = recorder.minute(now)
                    minute.depth = max(minute.depth, depth)
                    minute.oldest_age = max(minute.oldest_age, oldest)
                time.sleep(min(SAMPLE_SECONDS, max(0.0, minute_end - time.monotonic())))
            with recorder.lock:
                minute = recorder.minutes.setdefault(index, Minute())
            synced_now = synced(engine)
            memory = memory_mb(process.pid, data_dir)
            rows.append((minute, memory))
            print(
                f"{index + 1:>3} {minute.files:>6} {minute.searches:>6} "
                f"{synced_now - synced_before:>6} {minute.failures:>4} {minute.depth:>5} "
                f"{minute.oldest_age:>8.1f} {p95(minute.ingest_seconds) * 1000:>8.0f}ms "
                f"{p95(minute.search_seconds) * 1000:>8.0f}ms "
                f"{change_to_ledger_p95(engine, 60) * 1000:>8.0f}ms "
                f"{memory[0]:>6.0f} {memory[1]:>6.0f} {memory[2]:>7.0f} {memory[3]:>6.0f} "
                f"{os.getloadavg()[0]:>5.2f}",
                flush=True,
            )
            synced_before = synced_now
        failed = verdict(rows)
        print("PASS" if not failed else "FAIL: " + "; ".join(failed))
    finally:
        stop.set()
        engine.dispose()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
