"""The HTTP API under load: `POST /v1/search` and `GET /health/live` with 1, 8 and 32 concurrent
httpx clients, beside the `search` service called in-process by as many threads, same queries,
same run.

Run with ``python benchmarks/api.py [--paragraphs 5000] [--seconds 6]``. It starts its own
embedded PostgreSQL in a temporary folder, loads the first ``--paragraphs`` paragraphs of the
standard-library corpus (benchmarks/stdlib_corpus.py, vectors cached on disk) for one tenant as
benchmarks/search.py does, issues a `user` API key, and starts a real server in a process of its
own: uvicorn on ``create_app`` configured as `hartonomous up` configures it. Queries are the
first eight words of random paragraphs (seeded); each request embeds its query, over HTTP and
in-process alike. For each concurrency the in-process run and the HTTP run alternate in two
rounds (half the time each), so a change of the machine's load weighs on both; the printed
ratio is HTTP requests/s over in-process requests/s. Targets (docs/api.md): search over HTTP at
least 0.8x the in-process rate at 8 clients; health at least 2,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine

from hartonomous.db import EmbeddedPostgres, upgrade
from hartonomous.security import create_api_key, ensure_principal

try:
    from benchmarks.search import load, percentiles
    from benchmarks.stdlib_corpus import Corpus, corpus_vectors, stdlib_corpus
except ModuleNotFoundError:  # run as a script: benchmarks/ is on sys.path
    from search import load, percentiles  # type: ignore[no-redef]
    from stdlib_corpus import Corpus, corpus_vectors, stdlib_corpus  # type: ignore[no-redef]

TENANT = "bench"
CONCURRENCY = (1, 8, 32)
K = 10


@dataclass
class Tally:
    """Latencies (ms) of the requests that completed within timed runs, and the CPU seconds
    this process and the server process spent meanwhile."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    failures: int = 0
    cpu: dict[str, float] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        self.latencies += other.latencies
        self.seconds += other.seconds
        self.failures += other.failures
        for name, seconds in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds

    def cpu_line(self) -> str:
        count = len(self.latencies) or 1
        return "CPU per request: " + ", ".join(
            f"{name} {seconds / count * 1000:.2f} ms" for name, seconds in self.cpu.items()
        )

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def line(self, label: str) -> str:
        p50, p95 = percentiles(self.latencies) if self.latencies else (0.0, 0.0)
        failed = f"  {self.failures} FAILED" if self.failures else ""
        return (
            f"{label:42} {self.rate:8.1f} req/s  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms "
            f"({len(self.latencies)} requests){failed}"
        )


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used, from /proc (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(run: Callable[[], Tally], server_pid: int) -> Tally:
    """``run()``, with the CPU the server used during it (and the run's own, if it has none)."""
    own, server = time.process_time(), process_cpu(server_pid)
    tally = run()
    if "clients" not in tally.cpu:
        tally.cpu["this process"] = time.process_time() - own
    tally.cpu["server"] = process_cpu(server_pid) - server
    return tally


@dataclass(frozen=True)
class Requests:
    """What the HTTP clients send: ``bodies[turn % len]`` as JSON (GET when there are none)."""

    base: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    bodies: tuple[dict[str, object], ...] = ()

    def send(self, client: httpx.AsyncClient, turn: int) -> Awaitable[httpx.Response]:
        if not self.bodies:
            return client.get(self.path, headers=self.headers)
        body = self.bodies[turn % len(self.bodies)]
        return client.post(self.path, json=body, headers=self.headers)


def http_run(requests: Requests, clients: int, seconds: float) -> Tally:
    """``clients`` concurrent httpx clients (one connection each) sending for ``seconds``;
    the Tally's CPU is this process's (the clients')."""

    async def main() -> Tally:
        tally = Tally()
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=requests.base, limits=limits, timeout=60) as client:
            await requests.send(client, 0)  # warm-up: connections, first-use costs
            deadline = time.perf_counter() + seconds
            started = time.perf_counter()

            async def worker(number: int) -> None:
                turn = number
                while time.perf_counter() < deadline:
                    began = time.perf_counter()
                    answer = await requests.send(client, turn)
                    if answer.status_code == 200:
                        tally.latencies.append((time.perf_counter() - began) * 1000.0)
                    else:
                        tally.failures += 1
                    turn += clients

            await asyncio.gather(*(worker(n) for n in range(clients)))
            tally.seconds = time.perf_counter() - started
        return tally

    cpu = time.process_time()
    tally = asyncio.run(main())
    tally.cpu = {"clients": time.process_time() - cpu}
    return tally


def http_run_spread(requests: Requests, clients: int, seconds: float, processes: int) -> Tally:
    """``clients`` httpx clients spread over ``processes`` processes: a Python client spends
    more CPU per request than the server's answer to /health/live costs, so one process of
    clients would measure the client."""
    processes = max(1, min(processes, clients))
    shares = [clients // processes + (n < clients % processes) for n in range(processes)]
    if processes == 1:
        return http_run(requests, clients, seconds)
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(http_run, [requests] * processes, shares, [seconds] * processes))
    tally = Tally()
    for part in parts:
        tally.add(part)
    tally.seconds = max(part.seconds for part in parts)
    return tally


def thread_run(clients: int, seconds: float, call: Callable[[int], object]) -> Tally:
    """``clients`` threads calling ``call`` in-process for ``seconds``."""
    tally = Tally()
    lock = threading.Lock()
    call(0)
    deadline = time.perf_counter() + seconds

    def worker(number: int) -> None:
        turn = number
        mine: list[float] = []
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            call(turn)
            mine.append((time.perf_counter() - began) * 1000.0)
            turn += clients
        with lock:
            tally.latencies += mine

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally.seconds = time.perf_counter() - started
    return tally


def serve(url: str, port: int) -> None:
    """The server process: the API as `hartonomous up` serves it (uvicorn's defaults)."""
    import uvicorn

    from hartonomous.api import create_app
    from hartonomous.config import load_settings
    from hartonomous.services import open_platform

    # Measured is the API's own cost: a limit of 100 requests a minute (the default) would
    # answer 429 after the first hundred, so this run's tenant gets a limit it cannot reach.
    unlimited = {"name": "benchmark", "scope": "tenant", "permit_limit": 1_000_000_000}
    settings = load_settings(
        None, {"database": {"url": url}, "security": {"rate_limits": [unlimited]}}
    )
    with open_platform(settings) as platform:
        config = uvicorn.Config(
            create_app(platform), host="127.0.0.1", port=port, log_config=None, lifespan="off"
        )
        print(f"server: http {config.http}, loop {config.loop}", flush=True)
        uvicorn.Server(config).run()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_live(base: str, server: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not come up")


def subset(corpus: Corpus, count: int) -> Corpus:
    return Corpus(corpus.paragraphs[:count], corpus.sources[:count])


def issue_key(url: str) -> str:
    engine = create_engine(url)
    with engine.begin() as connection:
        ensure_principal(connection, TENANT, "bench-user", "bench user", "user")
        token = create_api_key(connection, TENANT, "bench-user", "benchmark")
    engine.dispose()
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=6.0, help="per run and concurrency")
    parser.add_argument(
        "--client-processes", type=int, default=4, help="processes running the health clients"
    )
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return

    full = stdlib_corpus()
    corpus = subset(full, args.paragraphs)
    vectors = corpus_vectors(full)[: args.paragraphs]
    rng = np.random.default_rng(20261130)
    picked = rng.choice(len(corpus.paragraphs), size=200, replace=False).tolist()
    queries = [" ".join(corpus.paragraphs[row].split()[:8]) for row in picked]
    load_average = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cpus: {os.cpu_count()}  load average: {load_average}  corpus: {args.paragraphs}")
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        with EmbeddedPostgres(root / "data") as server:
            upgrade(create_engine(server.url))
            load(server.url, corpus, vectors, {TENANT: set(range(len(corpus.paragraphs)))})
            token = issue_key(server.url)
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, __file__, "--serve", server.url, str(port)],
                env={**os.environ, "HARTONOMOUS_DATA_DIR": str(root / "api")},
            )
            try:
                base = f"http://127.0.0.1:{port}"
                wait_until_live(base, process)
                compare(
                    base,
                    token=token,
                    url=server.url,
                    queries=queries,
                    seconds=args.seconds,
                    root=root,
                    server_pid=process.pid,
                    client_processes=args.client_processes,
                )
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def compare(
    base: str,
    *,
    token: str,
    url: str,
    queries: list[str],
    seconds: float,
    root: Path,
    server_pid: int,
    client_processes: int,
) -> None:
    from hartonomous.config import load_settings
    from hartonomous.services import open_platform
    from hartonomous.services.search import Query, search

    searches = Requests(
        base,
        "/v1/search",
        {"Authorization": f"Bearer {token}"},
        tuple({"query": query, "k": K} for query in queries),
    )
    health = Requests(base, "/health/live")

    settings = load_settings(None, {"database": {"url": url}, "data_dir": root / "local"})
    with open_platform(settings) as platform:

        def in_process(turn: int) -> object:
            return search(platform, TENANT, Query(text=queries[turn % len(queries)]), K)

        ratios = {}
        for clients in CONCURRENCY:
            local, remote = Tally(), Tally()
            for _ in range(2):  # alternate, so load changes weigh on both
                local.add(timed(partial(thread_run, clients, seconds / 2, in_process), server_pid))
                remote.add(timed(partial(http_run, searches, clients, seconds / 2), server_pid))
            print(local.line(f"search in-process, {clients:2} threads"))
            print(f"{'':42} {local.cpu_line()}")
            print(remote.line(f"POST /v1/search, {clients:2} clients"))
            print(f"{'':42} {remote.cpu_line()}")
            ratios[clients] = remote.rate / local.rate
            print(f"{'':42} HTTP / in-process = {ratios[clients]:.2f}x")
    for clients in CONCURRENCY:
        run = partial(http_run_spread, health, clients, seconds / 2, client_processes)
        tally = timed(run, server_pid)
        print(tally.line(f"GET /health/live, {clients:2} clients"))
        server_ms = tally.cpu["server"] / max(len(tally.latencies), 1) * 1000
        capacity = 1000 / server_ms if server_ms else 0.0
        print(f"{'':42} {tally.cpu_line()}: {capacity:,.0f} req/s per core of the server's")
    print(f"search over HTTP at 8 clients: {ratios[8]:.2f}x the in-process rate (target 0.8x)")


if __name__ == "__main__":
    main()
