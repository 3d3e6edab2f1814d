"""The HTTP API under load: `POST /v1/search` and `GET /health/live` with 1, 8 and 32
concurrent clients (wrk and httpx), beside the `search` service called in-process by as many
threads, same queries, same run.

Run with ``python benchmarks/api.py [--paragraphs 5000] [--seconds 6] [--no-wrk]
[--workers 1,2]``. It starts its own embedded PostgreSQL in a temporary folder, loads the first
``--paragraphs`` paragraphs of the standard-library corpus (benchmarks/stdlib_corpus.py,
vectors cached on disk) for one tenant as benchmarks/search.py does, issues a `user` API key,
provisions the API role, and starts one real server per ``--workers`` entry, each in a process
of its own exactly as `hartonomous serve --workers N` serves the API: uvicorn on
``create_app`` over the API role's engine under row-level security, in that process (1) or in
N worker processes it supervises (cli/http_workers.py). Every server's runs alternate with
the others' and the in-process runs, so all share the same load. The
in-process side calls the service on the owner's engine, as the CLI does (no tenant setting,
no policies). Queries are the first eight words of random paragraphs (seeded); each request
embeds its query, over HTTP and in-process alike. For each concurrency the in-process run and
the HTTP runs alternate in two rounds (half the time each), so a change of the machine's load
weighs on all; the printed ratio is HTTP requests/s over in-process requests/s. Each run prints
the CPU per request of the clients (or the in-process caller), of the server (all its
processes, split into the event loops and the other threads) and of PostgreSQL.

Three kinds of clients, one keep-alive connection each: wrk (Debian's native load generator,
C, one thread; installed with apt when missing and this process is root); blocking httpx
clients in threads of this process (spread over ``--client-processes`` processes for
/health/live), the way earlier runs were read; and, for search, "httpx async": one
httpx.AsyncClient with as many concurrent tasks, in a process of its own (on uvloop), as an
asynchronous client application runs, and "httpx, 2 processes": the blocking clients' threads
spread over two processes. The async kind was added because the threads of one process queue on
its interpreter lock as the clients' CPU per request grows, which charges the HTTP side with a
cost of the benchmark's own client process; both are printed side by side, with each one's
CPU per request, so the reader can see which costs less. The targets are read with wrk, which
leaves the two cores to the server (httpx costs 0.5-1.4 ms of CPU per request, wrk 0.02-0.3
ms); without wrk (``--no-wrk``, or no apt) with httpx.
Targets (docs/api.md): search over HTTP at least 0.8x the in-process rate at 8 clients; health
at least 2,000 requests/s. They are read at 2 workers, one per core of the 2-core machine they
were set on: the in-process caller's threads spend most of a search in native code that
releases the interpreter lock (onnxruntime, pgvector's answer over libpq), whereas one server
process adds HTTP parsing, routing, validation, serialisation and thread hand-offs, all under
its one lock, and leaves part of the cores idle; `[server] workers` is what an operator sets
to use every core. The 1-worker figures are printed beside them, not hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import httpx
import numpy as np
import uvloop
from sqlalchemy import create_engine

from hartonomous.config import Settings
from hartonomous.db import EmbeddedPostgres, upgrade
from hartonomous.db.api_role import provision_api_role
from hartonomous.security import create_api_key, ensure_principal

try:
    from benchmarks.search import load, percentiles
    from benchmarks.stdlib_corpus import Corpus, corpus_vectors, stdlib_corpus
except ModuleNotFoundError:  # run as a script: benchmarks/ is on sys.path
    from search import load, percentiles  # type: ignore[no-redef]
    from stdlib_corpus import Corpus, corpus_vectors, stdlib_corpus  # type: ignore[no-redef]

TENANT = "bench"
CONCURRENCY = (1, 8, 32)
# The server the targets are read from (docs/api.md, "Measured"): one worker per core.
TARGET_WORKERS = 2
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


def _stat(path: Path) -> list[str]:
    # The fields after the command name, which may itself hold spaces (proc(5)).
    return path.read_text().rsplit(")", 1)[1].split()


def process_cpu(pid: int, thread: int | None = None) -> float:
    """CPU seconds (user + system) process ``pid`` (or its thread ``thread``) has used, from
    /proc (proc(5))."""
    path = Path(f"/proc/{pid}/stat") if thread is None else Path(f"/proc/{pid}/task/{thread}/stat")
    fields = _stat(path)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds PostgreSQL has used: the postmaster, its live backends, and the backends it
    has reaped (the postmaster's children times)."""
    fields = _stat(Path(f"/proc/{postmaster}/stat"))
    ticks = sum(int(fields[n]) for n in (11, 12, 13, 14))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = _stat(entry / "stat")
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile: its time is in the postmaster's children times
        if int(child[1]) == postmaster:
            ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (proc(5), /proc/pid/task/tid/children)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@dataclass(frozen=True)
class Processes:
    """The server's processes (with workers: the supervisor, then the workers, whose main
    threads run the event loops) and the PostgreSQL postmaster whose CPU a run is charged."""

    servers: tuple[int, ...]
    postmaster: int

    def cpu(self) -> tuple[float, float, float]:
        """(server, the server's event-loop threads, PostgreSQL) CPU seconds so far."""
        server = sum(process_cpu(pid) for pid in self.servers)
        loops = self.servers[1:] or self.servers
        loop = sum(process_cpu(pid, pid) for pid in loops)
        return server, loop, postgres_cpu(self.postmaster)


def timed(run: Callable[[], Tally], server: Server) -> Tally:
    """``run()``, with the CPU PostgreSQL used during it, the run's own when it has none
    (in-process), and otherwise the server's, split into its event loop (HTTP, routing, key
    and rate-limit checks) and its worker threads (the routes' work: search, embedding)."""
    own, before = time.process_time(), server.processes.cpu()
    tally = run()
    after = server.processes.cpu()
    if "clients" in tally.cpu:
        tally.cpu["server"] = after[0] - before[0]
        tally.cpu["server: event loop"] = after[1] - before[1]
        tally.cpu["server: threads"] = tally.cpu["server"] - tally.cpu["server: event loop"]
    else:
        tally.cpu["this process"] = time.process_time() - own
    tally.cpu["postgres"] = after[2] - before[2]
    return tally


@dataclass(frozen=True)
class Requests:
    """What the HTTP clients send: ``bodies[turn % len]`` as JSON (GET when there are none)."""

    base: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    bodies: tuple[dict[str, object], ...] = ()

    def prepared(self, client: httpx.Client) -> list[httpx.Request]:
        """Every request this run sends, built once: what is measured is sending them."""
        if not self.bodies:
            return [client.build_request("GET", self.path, headers=self.headers)]
        return [
            client.build_request("POST", self.path, json=body, headers=self.headers)
            for body in self.bodies
        ]


def http_run(requests: Requests, clients: int, seconds: float) -> Tally:
    """``clients`` threads of this process, each an httpx.Client with one keep-alive
    connection, sending ``requests`` for ``seconds``; the Tally's CPU is this process's.

    Blocking httpx clients in threads, each sending requests it built once, cost about half
    the CPU per request of an httpx.AsyncClient (measured: 0.5 against 1.4 ms for
    `/health/live`); the clients share the machine with the server, so their cost is kept low.
    """
    tally = Tally()
    lock = threading.Lock()
    deadline = [0.0]
    # Every client connected and warmed up, the clock starts (the barrier's action).
    ready = threading.Barrier(
        clients + 1, action=lambda: deadline.__setitem__(0, time.perf_counter() + seconds)
    )

    def worker(number: int) -> None:
        latencies: list[float] = []
        failures = 0
        with httpx.Client(base_url=requests.base, timeout=60) as client:
            prepared = requests.prepared(client)
            client.send(prepared[number % len(prepared)]).read()  # warm-up: the connection
            ready.wait()
            turn = number
            while time.perf_counter() < deadline[0]:
                began = time.perf_counter()
                answer = client.send(prepared[turn % len(prepared)])
                answer.read()
                if answer.status_code == 200:
                    latencies.append((time.perf_counter() - began) * 1000.0)
                else:
                    failures += 1
                turn += clients
        with lock:
            tally.latencies += latencies
            tally.failures += failures

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    tally.seconds = time.perf_counter() - started
    tally.cpu = {"clients": time.process_time() - cpu}
    return tally


def http_async_run(requests: Requests, clients: int, seconds: float) -> Tally:
    """``clients`` concurrent tasks of one httpx.AsyncClient (``clients`` keep-alive
    connections) on this process's event loop, sending ``requests`` for ``seconds``; the
    Tally's CPU is this process's. Run in a process of its own (``http_async_process_run``),
    on uvloop, as the server runs."""
    return uvloop.run(_http_async(requests, clients, seconds))


async def _http_async(requests: Requests, clients: int, seconds: float) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=requests.base, timeout=60, limits=limits) as client:
        prepared = [
            client.build_request("POST", requests.path, json=body, headers=requests.headers)
            for body in requests.bodies
        ] or [client.build_request("GET", requests.path, headers=requests.headers)]

        async def worker(number: int, until: float) -> None:
            turn = number
            while time.perf_counter() < until:
                began = time.perf_counter()
                answer = await client.send(prepared[turn % len(prepared)])
                await answer.aread()
                if answer.status_code == 200:
                    tally.latencies.append((time.perf_counter() - began) * 1000.0)
                else:
                    tally.failures += 1
                turn += clients

        # Warm-up: every connection opened before the clock starts.
        await asyncio.gather(*(client.send(prepared[n % len(prepared)]) for n in range(clients)))
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(n, started + seconds) for n in range(clients)))
        tally.seconds = time.perf_counter() - started
        tally.cpu = {"clients": time.process_time() - cpu}
    return tally


def http_async_process_run(requests: Requests, clients: int, seconds: float) -> Tally:
    """``http_async_run`` in a process of its own (spawned), as a client application is."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(http_async_run, requests, clients, seconds).result()


def http_run_spread(requests: Requests, clients: int, seconds: float, processes: int) -> Tally:
    """``clients`` httpx clients spread over ``processes`` processes (one process's threads
    would queue on its interpreter lock before the server is busy)."""
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


# wrk's Lua script: bodies[turn % len] (as http_run sends them), and at the end the latency
# histogram (microseconds, count per value) and the count of non-2xx/3xx answers, to a file.
_WRK_SCRIPT = """
local bodies, path, method, headers, turn = {}, nil, "GET", {}, 0
function init(args)
  path = args[1]
  for line in io.lines(args[2]) do
    if line:sub(1, 1) == "H" then
      local name, value = line:sub(3):match("^([^:]+): (.*)$")
      headers[name] = value
    elseif line:sub(1, 1) == "B" then
      bodies[#bodies + 1] = line:sub(3)
    end
  end
  if #bodies > 0 then
    method = "POST"
    headers["Content-Type"] = "application/json"
  end
end
function request()
  turn = turn + 1
  local body = nil
  if #bodies > 0 then body = bodies[turn % #bodies + 1] end
  return wrk.format(method, path, headers, body)
end
function done(summary, latency, requests)
  local out = io.open(os.getenv("WRK_OUTPUT"), "w")
  out:write(string.format("failed %d\\n", summary.errors.status + summary.errors.read
    + summary.errors.write + summary.errors.timeout + summary.errors.connect))
  out:write(string.format("seconds %f\\n", summary.duration / 1e6))
  for i = 1, #latency do
    local value, count = latency(i)
    out:write(string.format("%d %d\\n", value, count))
  end
  out:close()
end
"""


def ensure_wrk() -> str | None:
    """The path of wrk (Debian's package, a native HTTP load generator), installed with apt
    when missing and this process may (root); None when it cannot be had."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        found = shutil.which("wrk")
    return found


def wrk_run(wrk: str, requests: Requests, clients: int, seconds: float, workdir: Path) -> Tally:
    """wrk (one thread, ``clients`` keep-alive connections) sending ``requests`` for
    ``seconds`` (whole seconds, at least 1): a load generator in C that leaves the cores to
    the server (~0.02 ms of CPU per request against httpx's ~0.5-1 ms). The Tally's CPU is
    wrk's (this process's children's)."""
    script, spec, output = workdir / "wrk.lua", workdir / "wrk.requests", workdir / "wrk.out"
    script.write_text(_WRK_SCRIPT)
    lines = [f"H {name}: {value}" for name, value in requests.headers.items()]
    lines += [f"B {json.dumps(body)}" for body in requests.bodies]
    spec.write_text("\n".join(lines) + "\n")
    whole = max(1, math.ceil(seconds))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [wrk, "-t1", f"-c{clients}", f"-d{whole}s", "--timeout", "60s", "-s", str(script)]
    command += [f"{requests.base}{requests.path}", "--", requests.path, str(spec)]
    subprocess.run(
        command, check=True, capture_output=True, env={**os.environ, "WRK_OUTPUT": str(output)}
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tally = Tally()
    for line in output.read_text().splitlines():
        name, value = line.split()
        if name == "failed":
            tally.failures = int(value)
        elif name == "seconds":
            tally.seconds = float(value)
        else:
            tally.latencies += [int(name) / 1000.0] * int(value)
    tally.cpu = {"clients": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}
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


def server_settings(url: str, data_dir: Path) -> Settings:
    """The server's settings: ``url`` as `database.url`, and a rate limit it cannot reach.

    Measured is the API's own cost: a limit of 100 requests a minute (the default) would answer
    429 after the first hundred, so this run's tenant gets a limit it cannot reach.
    """
    from hartonomous.config import load_settings

    unlimited = {"name": "benchmark", "scope": "tenant", "permit_limit": 1_000_000_000}
    overrides = {"database": {"url": url}, "security": {"rate_limits": [unlimited]}}
    return load_settings(None, {**overrides, "data_dir": data_dir})


def serve(url: str, port: int, data_dir: Path, workers: int) -> None:
    """The server process: the API exactly as `hartonomous serve --workers N` serves it, on
    the API role's engine with row-level security (``open_serving_platform``, then
    ``serve_api`` for one worker, ``serve_api_workers`` for more)."""
    from hartonomous.cli.http_server import ShutdownRequestedError, serve_api
    from hartonomous.cli.http_workers import serve_api_workers
    from hartonomous.observability import configure_logging
    from hartonomous.services.platform import open_serving_platform

    settings = server_settings(url, data_dir)
    configure_logging(settings.logging.level, settings.logging.format)  # to stderr, as the CLI
    # The benchmark's own stop (SIGTERM) ends the server: not a failure to report.
    with open_serving_platform(settings) as platform, suppress(ShutdownRequestedError):
        announce = partial(print, "server:", flush=True)
        if workers == 1:
            serve_api(platform, "127.0.0.1", port, announce)
        else:
            serve_api_workers(settings, "127.0.0.1", port, workers, announce)


def postmaster(server: EmbeddedPostgres) -> int:
    return int((server.layout.pgdata / "postmaster.pid").read_text().split()[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(url: str, root: Path, workers: int, postmaster: int) -> Iterator[Server]:
    """A server process (``workers`` API processes) on a free port, announced; stopped after."""
    port = free_port()
    command = [sys.executable, __file__, "--serve", url, str(port), str(root / "api")]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        # Announced once every worker accepts connections.
        while not (line := process.stdout.readline()).startswith("server:"):
            if not line:
                raise SystemExit(f"the server exited with {process.wait()}")
        pids = (process.pid, *children(process.pid)) if workers > 1 else (process.pid,)
        yield Server(f"http://127.0.0.1:{port}", workers, Processes(pids, postmaster))
    finally:
        process.terminate()
        process.wait(timeout=60)


@dataclass(frozen=True)
class Server:
    """A running server: where it listens, its workers, and its processes."""

    base: str
    workers: int
    processes: Processes


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
    parser.add_argument(
        "--no-wrk", action="store_true", help="httpx clients only (no native load generator)"
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="server processes of each server measured, comma-separated (serve --workers)",
    )
    parser.add_argument("--serve", nargs=3, metavar=("URL", "PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), Path(args.serve[2]), int(args.workers))
        return

    with (
        prepared_database(args.paragraphs) as (url, token, queries, root, pg_pid),
        ExitStack() as up,
    ):
        servers = [
            up.enter_context(running_server(url, root, int(workers), pg_pid))
            for workers in args.workers.split(",")
        ]
        compare(
            servers,
            token=token,
            url=url,
            queries=queries,
            seconds=args.seconds,
            root=root,
            client_processes=args.client_processes,
            wrk=None if args.no_wrk else ensure_wrk(),
        )


@contextmanager
def prepared_database(paragraphs: int) -> Iterator[tuple[str, str, list[str], Path, int]]:
    """An embedded PostgreSQL in a temporary folder holding the first ``paragraphs`` of the
    standard-library corpus for one tenant, a `user` key and the API role, as `up` leaves it:
    (URL, the key, 200 queries, the folder, the postmaster's pid). Removed afterwards."""
    full = stdlib_corpus()
    corpus = subset(full, paragraphs)
    vectors = corpus_vectors(full)[:paragraphs]
    rng = np.random.default_rng(20261130)
    picked = rng.choice(len(corpus.paragraphs), size=200, replace=False).tolist()
    queries = [" ".join(corpus.paragraphs[row].split()[:8]) for row in picked]
    load_average = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cpus: {os.cpu_count()}  load average: {load_average}  corpus: {paragraphs}")
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        with EmbeddedPostgres(root / "data") as server:
            upgrade(create_engine(server.url))
            load(server.url, corpus, vectors, {TENANT: set(range(len(corpus.paragraphs)))})
            token = issue_key(server.url)
            # As `up` does before serving: the API role, with its grants (docs/security.md).
            owner = create_engine(server.url)
            provision_api_role(owner, server_settings(server.url, root / "api"))
            owner.dispose()
            yield server.url, token, queries, root, postmaster(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def compare(
    servers: list[Server],
    *,
    token: str,
    url: str,
    queries: list[str],
    seconds: float,
    root: Path,
    client_processes: int,
    wrk: str | None,
) -> None:
    from hartonomous.config import load_settings
    from hartonomous.services import open_platform
    from hartonomous.services.search import Query, search

    def searches(server: Server) -> Requests:
        return Requests(
            server.base,
            "/v1/search",
            {"Authorization": f"Bearer {token}"},
            tuple({"query": query, "k": K} for query in queries),
        )

    clients_of: dict[str, Callable[[Requests, int, float], Tally]] = {
        "httpx": http_run,
        "httpx async": http_async_process_run,
        "httpx, 2 processes": partial(_http_spread, 2),
    }
    if wrk is not None:
        clients_of["wrk"] = partial(_wrk_in, wrk, root)

    settings = load_settings(None, {"database": {"url": url}, "data_dir": root / "local"})
    ratios: dict[tuple[str, int, int], float] = {}
    with open_platform(settings) as platform:

        def in_process(turn: int) -> object:
            return search(platform, TENANT, Query(text=queries[turn % len(queries)]), K)

        # Each process loads the model on its first search (~1 s of CPU): before any timed
        # run, so the first runs' CPU per request is not charged with it. 8 clients for 2 s
        # reach every worker.
        in_process(0)
        for server in servers:
            http_run(searches(server), 8, 2.0)
        for clients in CONCURRENCY:
            local = Tally()
            remote = {(name, s.workers): Tally() for s in servers for name in clients_of}
            for _ in range(2):  # alternate, so load changes weigh on all
                local.add(timed(partial(thread_run, clients, seconds / 2, in_process), servers[0]))
                for server in servers:
                    for name, run in clients_of.items():
                        tally = timed(partial(run, searches(server), clients, seconds / 2), server)
                        remote[name, server.workers].add(tally)
            print(local.line(f"search in-process, {clients:2} threads"))
            print(f"{'':42} {local.cpu_line()}")
            for (name, workers), tally in remote.items():
                print(tally.line(f"POST /v1/search, {clients:2} {name}, {workers} worker(s)"))
                print(f"{'':42} {tally.cpu_line()}")
                ratio = tally.rate / local.rate if local.rate else 0.0
                ratios[name, workers, clients] = ratio
                print(f"{'':42} HTTP ({name}, {workers} worker(s)) / in-process = {ratio:.2f}x")
    health_rates: dict[tuple[str, int], float] = {}
    spread: dict[str, Callable[[Requests, int, float], Tally]] = {
        "httpx": partial(_http_spread, client_processes)
    }
    if wrk is not None:
        spread["wrk"] = clients_of["wrk"]
    for server in servers:
        health = Requests(server.base, "/health/live")
        for name, run in spread.items():
            for clients in CONCURRENCY:
                tally = timed(partial(run, health, clients, seconds / 2), server)
                health_rates[name, server.workers] = max(
                    tally.rate, health_rates.get((name, server.workers), 0.0)
                )
                print(tally.line(f"GET /health/live, {clients:2} {name}, {server.workers} w."))
                server_ms = tally.cpu["server"] / max(len(tally.latencies), 1) * 1000
                capacity = 1000 / server_ms if server_ms else 0.0
                print(f"{'':42} {tally.cpu_line()}: {capacity:,.0f} req/s per core of the server's")
    target = "wrk" if wrk is not None else "httpx"
    for server in servers:
        print(
            f"{server.workers} worker(s), {target} clients: search over HTTP at 8 clients "
            f"{ratios[target, server.workers, 8]:.2f}x the in-process rate (httpx clients "
            f"{ratios['httpx', server.workers, 8]:.2f}x); /health/live at most "
            f"{health_rates[target, server.workers]:,.0f} requests/s"
        )
    print(
        "targets: search at 8 clients 0.8x the in-process rate, /health/live 2,000 "
        f"requests/s; read at {TARGET_WORKERS} workers"
    )


def _wrk_in(wrk: str, root: Path, requests: Requests, clients: int, seconds: float) -> Tally:
    return wrk_run(wrk, requests, clients, seconds, root)


def _http_spread(processes: int, requests: Requests, clients: int, seconds: float) -> Tally:
    return http_run_spread(requests, clients, seconds, processes)


if __name__ == "__main__":
    main()
