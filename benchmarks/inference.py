"""`onnx_run` beside onnxruntime on the same file, measured in one run on a fresh embedded
PostgreSQL.

Run with ``python benchmarks/inference.py [--runs 200] [--mlp-mib 32]``. Two models are
ingested through the real pipeline: the largest ONNX file onnxruntime ships
(``datasets/logreg_iris.onnx``) and an MLP generated here with its weights in an external data
file (about ``--mlp-mib`` MiB, so that reconstruction's MB/s means something). For each, in the
same process and on the same input:

- direct: ``onnxruntime.InferenceSession`` on the file (its creation, ms) and warm
  ``session.run`` p50/p95;
- run_onnx: the first call from a cold cache (model rebuilt from its atoms, external data
  included: ms, and MB/s of the reconstruction step) and warm calls (session cached) p50/p95.

Warm runs of the two paths alternate in rounds so a change of the machine's load weighs on
both. Printed: the ratio of the warm p50s and the fixed overhead, warm p50 - 1.2 x direct p50,
against the target (docs/inference.md): warm p50 <= 1.2 x direct + 5 ms. Each measured path is
one function taking a ``Bench`` and a number of warm runs and returning ``Figures``
(``PATHS``). Two paths run the whole job: its bookkeeping alone in one thread (submit, claim,
run, complete, get) and the job as a caller of ``infer --wait`` sees it (a worker thread woken
by the submission's NOTIFY, the caller woken by the completion's). Each is held to the same
target, and the printed line says whether it is met.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.datasets import get_example
from sqlalchemy import Engine, text

from hartonomous.config import Settings
from hartonomous.config.sections import DatabaseSettings
from hartonomous.db import EmbeddedPostgres, upgrade
from hartonomous.db.connection import open_engine
from hartonomous.inference import worker as worker_module
from hartonomous.inference.onnx_run import clear_sessions, run_onnx
from hartonomous.inference.submission import Submission
from hartonomous.inference.tasks import InferenceTask, TaskContext, TaskRequest
from hartonomous.inference.worker import InferenceWorker
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.json_types import JsonValue
from hartonomous.observability.logging import configure_logging
from hartonomous.security import ensure_tenant
from hartonomous.services import Platform
from hartonomous.services import inference as inference_service

TENANT = "bench"
TARGET_RATIO = 1.2
TARGET_FIXED_MS = 5.0
_PROVIDERS = ["CPUExecutionProvider"]


@dataclass
class Bench:
    """One model under test: its file, its ingested atom and the input both paths run on."""

    engine: Engine
    settings: Settings
    name: str
    path: Path  # the model file (external data beside it)
    model_bytes: int  # the file and its external data
    model_atom_id: bytes
    feeds: dict[str, np.ndarray]
    runs: int  # warm runs of each path, in all
    rounds: int = 4

    def context(self) -> TaskContext:
        request: dict[str, JsonValue] = {
            "inputs": {
                name: {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.tolist()}
                for name, a in self.feeds.items()
            }
        }
        return TaskContext(
            self.engine,
            self.settings,
            TaskRequest(
                TENANT, None, uuid.uuid4(), InferenceTask.ONNX_RUN, self.model_atom_id, request
            ),
        )


@dataclass
class Figures:
    """What one path measured: first call (ms) and warm latencies (ms)."""

    first_ms: float
    warm_ms: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def p50(self) -> float:
        return float(np.percentile(self.warm_ms, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.warm_ms, 95))


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - started) / 1e6


def direct_onnxruntime(bench: Bench, runs: int) -> Figures:
    """onnxruntime on the file: session creation (+ first run), then warm runs."""
    holder: list[onnxruntime.InferenceSession] = []
    create_ms = _timed(
        lambda: holder.append(onnxruntime.InferenceSession(str(bench.path), providers=_PROVIDERS))
    )
    session = holder[0]
    # The same outputs run_onnx fetches: the tensor ones.
    names = [o.name for o in session.get_outputs() if o.type.startswith("tensor(")]
    first_ms = create_ms + _timed(lambda: session.run(names, bench.feeds))
    figures = Figures(first_ms, note=f"session create {create_ms:.1f} ms")
    figures.warm_ms = [_timed(lambda: session.run(names, bench.feeds)) for _ in range(runs)]
    return figures


def run_onnx_task(bench: Bench, runs: int) -> Figures:
    """The `onnx_run` task called in-process: cold first call, then warm (cached) calls."""
    clear_sessions()
    context = bench.context()
    holder = []
    first_ms = _timed(lambda: holder.append(run_onnx(context)))
    steps = {step.operation: step for step in holder[0].steps}
    rebuild_ms = steps["reconstruct"].duration_ms
    figures = Figures(
        first_ms,
        note=(
            f"reconstruct {rebuild_ms:.1f} ms "
            f"({bench.model_bytes / 1e6 / (rebuild_ms / 1000):.1f} MB/s), "
            f"session create {steps['session_create'].duration_ms:.1f} ms"
        ),
    )
    figures.warm_ms = [_timed(lambda: run_onnx(context)) for _ in range(runs)]
    return figures


_SEEDS = itertools.count(1)


def _job_inputs(bench: Bench, rng: np.random.Generator) -> dict[str, JsonValue]:
    """The bench's feeds moved by a little noise: a new request each call (an identical one
    is a cache hit, measured apart by the tests, not here)."""
    return {
        name: {
            "dtype": a.dtype.name,
            "shape": list(a.shape),
            "data": (a + rng.standard_normal(a.shape).astype(a.dtype) * 1e-3).tolist(),
        }
        for name, a in bench.feeds.items()
    }


def _submission(bench: Bench, rng: np.random.Generator) -> Submission:
    return Submission(
        TENANT,
        InferenceTask.ONNX_RUN,
        {"inputs": _job_inputs(bench, rng)},
        model=bench.model_atom_id.hex(),
    )


def _submit(platform: Platform, bench: Bench, rng: np.random.Generator) -> uuid.UUID:
    submitted = inference_service.submit(platform, _submission(bench, rng))
    assert not submitted.cache_hit
    return submitted.inference_id


def inference_job(bench: Bench, runs: int) -> Figures:
    """The job's bookkeeping alone, in one thread: `services.inference.submit` (stores the
    request), the worker's claim, the run and the completion transaction (steps, output
    atoms, stream), then `get`: no waking and no waiting. The note gives each part's p50 and
    the statements the server ran per job (``_statements``): where the time goes."""
    platform = Platform(bench.engine, bench.settings, "")
    url = bench.engine.url.render_as_string(hide_password=False)
    worker = InferenceWorker(url, bench.engine, bench.settings)
    rng = np.random.default_rng(next(_SEEDS))
    parts: dict[str, list[float]] = {"submit": [], "claim+run+complete": [], "get": []}

    def one() -> None:
        ids: list[uuid.UUID] = []
        views: list[inference_service.InferenceView] = []
        parts["submit"].append(_timed(lambda: ids.append(_submit(platform, bench, rng))))
        parts["claim+run+complete"].append(_timed(lambda: _ran(worker.run_once())))
        parts["get"].append(
            _timed(lambda: views.append(inference_service.get(platform, TENANT, ids[0])))
        )
        assert views[0].status == "completed", views[0].error

    try:
        clear_sessions()
        figures = Figures(_timed(one))
        _statements(bench.engine, reset=True)
        figures.warm_ms = [_timed(one) for _ in range(runs)]
        statements = _statements(bench.engine, reset=False)
    finally:
        worker.close()
    figures.note = (
        "p50 "
        + ", ".join(f"{name} {np.percentile(ms[1:], 50):.1f}" for name, ms in parts.items())
        + f" ms; {statements / max(runs, 1):.1f} statements per job"
    )
    return figures


def _statements(engine: Engine, *, reset: bool) -> int:
    """Statements the server ran since the last reset (pg_stat_statements: BEGIN, COMMIT and
    COPY included, the pool's pre-pings not; these queries themselves left out)."""
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        if reset:
            connection.execute(text("SELECT pg_stat_statements_reset()"))
            return 0
        return int(
            connection.execute(
                text(
                    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                    "WHERE query NOT LIKE '%pg_stat_statements%'"
                )
            ).scalar_one()
        )


def _wal_syncs(engine: Engine) -> np.ndarray:
    """WAL flushes (``fdatasync`` and the like) since the server started: those made by
    client sessions (each one a commit waiting for it) and by the WAL writer (in the
    background, for commits that do not wait). From ``pg_stat_io`` (PostgreSQL 18), where
    each process reports its own at most a second late."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT coalesce(sum(fsyncs) FILTER (WHERE backend_type = 'client backend'), 0),"
                " coalesce(sum(fsyncs) FILTER (WHERE backend_type = 'walwriter'), 0)"
                " FROM pg_stat_io WHERE object = 'wal'"
            )
        ).one()
    return np.array([int(row[0]), int(row[1])])


def _ran(ran: bool) -> None:
    assert ran, "the worker found no job"


class _PhaseClock:
    """Times the worker's claim and completion (wrapping the functions the worker module
    calls, for this run only), so a waited job splits into submit, queue wait (submission
    committed to claim returned: the NOTIFY, the worker waking, the claim), run (claim to
    completion), complete (the worker's completion transaction) and told (completion begun
    to the caller holding the outcome: the transaction, the done NOTIFY, the caller's read;
    the caller may be told before the worker's commit call returns)."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.phases: dict[str, list[float]] = {
            name: [] for name in ("submit", "queue wait", "run", "complete", "told")
        }

    def mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    def record(self) -> None:
        m = self.marks
        for name, (start, end) in {
            "submit": ("start", "submitted"),
            "queue wait": ("submitted", "claimed"),
            "run": ("claimed", "completing"),
            "told": ("completing", "told"),
        }.items():
            self.phases[name].append((m[end] - m[start]) * 1000)
        m.clear()

    @contextmanager
    def wrapping_worker(self) -> Iterator[None]:
        # The worker module's own names for them (what `run_once` and `_run` call), and the
        # service's name for the submission (what `submit_and_wait` calls).
        namespace = vars(worker_module)
        claim_next, complete = namespace["claim_next"], namespace["complete"]
        service = vars(inference_service)
        submit = service["_submit"]

        def timed_submit(*args: Any, **options: Any) -> Any:
            submitted = submit(*args, **options)
            self.mark("submitted")
            return submitted

        def timed_claim(*args: Any) -> Any:
            claim = claim_next(*args)
            if claim is not None:
                self.mark("claimed")
            return claim

        def timed_complete(*args: Any) -> bool:
            self.mark("completing")
            started = time.perf_counter()
            try:
                return bool(complete(*args))
            finally:
                self.phases["complete"].append((time.perf_counter() - started) * 1000)

        namespace.update(claim_next=timed_claim, complete=timed_complete)
        service.update(_submit=timed_submit)
        try:
            yield
        finally:
            namespace.update(claim_next=claim_next, complete=complete)
            service.update(_submit=submit)

    def note(self) -> str:
        return (
            "p50 "
            + ", ".join(
                f"{name} {np.percentile(ms, 50):.2f}" for name, ms in self.phases.items() if ms
            )
            + " ms"
        )


def waited_job(bench: Bench, runs: int) -> Figures:
    """The job as a caller of `infer --wait` sees it: the worker serves in a thread of its own
    as in `up` (idle, it waits for the submission's NOTIFY), and the caller calls
    `services.inference.submit_and_wait` (woken by the completion's NOTIFY) until it is
    completed. The note splits the p50 into phases (``_PhaseClock``) and gives the WAL
    flushes per job (``pg_stat_io``'s WAL fsyncs: the whole server's, the worker's heartbeat
    included)."""
    platform = Platform(bench.engine, bench.settings, "")
    url = bench.engine.url.render_as_string(hide_password=False)
    worker = InferenceWorker(url, bench.engine, bench.settings)
    stop = threading.Event()
    serving = threading.Thread(target=worker.run, args=(stop,), name="bench-inference-worker")
    rng = np.random.default_rng(next(_SEEDS))
    clock = _PhaseClock()

    def one() -> None:
        clock.mark("start")
        view = inference_service.submit_and_wait(
            platform, _submission(bench, rng), timeout_seconds=60
        )
        clock.mark("told")
        assert not view.cache_hit
        assert view.status == "completed", view.error
        clock.record()

    clear_sessions()
    with clock.wrapping_worker():
        serving.start()
        try:
            time.sleep(0.2)  # the worker reaches its idle wait (LISTENing), as a running `up` is
            figures = Figures(_timed(one))
            syncs = _wal_syncs(bench.engine)
            cpu_started = time.process_time()
            figures.warm_ms = [_timed(one) for _ in range(runs)]
            cpu_ms = (time.process_time() - cpu_started) * 1000 / max(runs, 1)
            syncs = _wal_syncs(bench.engine) - syncs
        finally:
            stop.set()
            serving.join()
    for ms in clock.phases.values():
        del ms[0]  # the first call's
    # This process's CPU per job (caller and worker threads; not the database's), which the
    # machine's load does not stretch as it does the wall-clock phases.
    figures.note = (
        f"{clock.note()}; this process's CPU {cpu_ms:.2f} ms per job; "
        f"WAL flushes per job: {syncs[0] / max(runs, 1):.2f} waited for by sessions, "
        f"{syncs[1] / max(runs, 1):.2f} by the WAL writer"
    )
    return figures


# Each measured path: (label, function). The first is the baseline the others are compared to.
PATHS: list[tuple[str, Callable[[Bench, int], Figures]]] = [
    ("direct onnxruntime", direct_onnxruntime),
    ("run_onnx (in-process)", run_onnx_task),
    ("job, one thread (submit..get)", inference_job),
    ("job, worker thread + wait", waited_job),
]


def measure(bench: Bench) -> dict[str, Figures]:
    """Every path, warm runs alternating in rounds; first calls from the first round."""
    per_round = max(bench.runs // bench.rounds, 1)
    results: dict[str, Figures] = {}
    for round_index in range(bench.rounds):
        for label, path in PATHS:
            figures = path(bench, per_round)
            if round_index == 0:
                results[label] = figures
            else:
                results[label].warm_ms += figures.warm_ms
    return results


def report(bench: Bench, results: dict[str, Figures]) -> None:
    print(f"\n{bench.name}: {bench.model_bytes / 1e6:.2f} MB, {bench.runs} warm runs per path")
    (base_label, _), *others = PATHS
    base = results[base_label]
    for label, _ in PATHS:
        figures = results[label]
        print(
            f"  {label:30s} first {figures.first_ms:8.2f} ms   warm p50 {figures.p50:7.3f} ms  "
            f"p95 {figures.p95:7.3f} ms   ({figures.note})"
        )
    for label, _ in others:
        figures = results[label]
        fixed = figures.p50 - TARGET_RATIO * base.p50
        verdict = "met" if fixed <= TARGET_FIXED_MS else "NOT met"
        print(
            f"  {label} / {base_label}: warm p50 {figures.p50 / base.p50:.2f}x; fixed overhead "
            f"(p50 - {TARGET_RATIO} x direct p50) {fixed:+.2f} ms, target <= "
            f"{TARGET_FIXED_MS:.0f} ms: {verdict}"
        )


def write_mlp(folder: Path, mebibytes: int) -> Path:
    """``y = relu(x @ w1) @ w2``, x ``[1, 1024]``, the weights (``mebibytes`` MiB of float32
    in all) in ``mlp.weights``, an external data file beside the model."""
    # Two float32 matrices of 1024 x width each.
    width = max(mebibytes * 1024 * 1024 // (2 * 1024 * 4), 1)
    rng = np.random.default_rng(20261130)
    weights = {
        "w1": rng.standard_normal((1024, width), dtype=np.float32) / 32,
        "w2": rng.standard_normal((width, 1024), dtype=np.float32) / 32,
    }
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "bench_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1024])],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder.mkdir(parents=True)
    path = folder / "mlp.onnx"
    onnx.save(model, path, save_as_external_data=True, location="mlp.weights", size_threshold=0)
    return path


def _bench(engine: Engine, settings: Settings, path: Path, runs: int) -> Bench:
    started = time.perf_counter()
    outcome = ingest_paths(engine, IngestRequest(TENANT), [path.parent])
    atoms = {Path(f.path).name: f.atom_id for f in outcome.files if f.atom_id is not None}
    total = sum(file.stat().st_size for file in path.parent.iterdir())
    print(
        f"ingested {path.name} and its folder ({total / 1e6:.2f} MB) in "
        f"{time.perf_counter() - started:.2f} s"
    )
    session = onnxruntime.InferenceSession(str(path), providers=_PROVIDERS)
    rng = np.random.default_rng(7)
    feeds = {
        i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(
            np.float32
        )
        for i in session.get_inputs()
    }
    return Bench(
        engine, settings, path.name, path, total, bytes.fromhex(str(atoms[path.name])), feeds, runs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="warm runs of each path")
    parser.add_argument("--mlp-mib", type=int, default=32, help="the generated MLP's weights")
    arguments = parser.parse_args()
    configure_logging("warning")  # each job's `inference_completed` line is not a figure
    print("load average (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))

    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        shipped = root / "shipped"
        shipped.mkdir()
        largest = max(
            (Path(get_example(n)) for n in ("logreg_iris.onnx", "sigmoid.onnx")),
            key=lambda p: p.stat().st_size,
        )
        shutil.copy(largest, shipped / largest.name)
        models = [shipped / largest.name, write_mlp(root / "mlp", arguments.mlp_mib)]
        with EmbeddedPostgres(root / "data") as server:
            # The engine `up` gives services: its pool pings each connection it hands out.
            engine = open_engine(server.url, DatabaseSettings())
            upgrade(engine)
            with engine.begin() as connection:
                ensure_tenant(connection, TENANT, "Benchmark")
                # Statement counts per job (`_statements`); the server preloads the module.
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            settings = Settings.model_validate(
                {"data_dir": root / "state", "inference": {"max_model_bytes": 1 << 30}}
            )
            for path in models:
                bench = _bench(engine, settings, path, arguments.runs)
                report(bench, measure(bench))
            engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
