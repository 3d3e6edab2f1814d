"""Ingestion throughput, measured in one run on a fresh embedded PostgreSQL.

Prints, each beside its baseline measured in the same process:
- chunk+hash MB/s against single-thread SHA-256 over the same bytes (target >= 0.9x), for
  chunk_bytes over a buffer (against hashlib.sha256) and for chunk_stream over a file, the path
  ingestion takes (against hashlib.file_digest of the file); medians of --repeat runs;
- small text files/s (one sentence each, embedded) against the text embedder's own
  sentences/s on the same sentences (target >= 0.8x); medians of --text-repeat runs, each on new
  sentences;
- small binary files/s, not embedded (target >= 1000/s);
- first ingest of the 90 MB all-MiniLM-L6-v2 safetensors file in MB/s, and its re-ingest.
The machine's load average is printed first: the figures mean little on a busy machine. CPU time
is printed beside the chunking and small-text figures (this process's, and for ingestion the
embedded PostgreSQL's): it changes little with load, so it says where the time goes on a busy
machine too (docs/ingest.md, "Measured").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine

from hartonomous.atoms.chunking import chunk_bytes, chunk_stream
from hartonomous.db import EmbeddedPostgres, upgrade
from hartonomous.embed.indexing import Embedders, shared_text_embedder
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.ops.sample_content import minilm_safetensors
from hartonomous.security import ensure_tenant

_WORDS = [
    "atom",
    "holding",
    "tenant",
    "chunk",
    "digest",
    "vector",
    "search",
    "ledger",
    "event",
    "broker",
    "graph",
    "model",
    "tensor",
    "file",
    "folder",
    "paragraph",
    "sentence",
    "embedding",
    "index",
    "provenance",
    "policy",
    "batch",
    "savepoint",
    "commit",
]


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def process_cpu() -> float:
    """Seconds of CPU this process has used, all its threads together."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu(pgdata: Path) -> float:
    """Seconds of CPU the PostgreSQL server of ``pgdata`` (postmaster and children) has used,
    from /proc (Linux); NaN elsewhere."""
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                # Fields after the command name: state, ppid, ..., utime (14th), stime (15th).
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            if postmaster in (int(entry.name), int(fields[1])):
                total += int(fields[11]) + int(fields[12])
        return total / ticks
    except (OSError, ValueError):
        return float("nan")


def chunking_ratio(root: Path, size: int, repeat: int) -> None:
    """chunk_bytes against hashlib.sha256 over the same buffer, and chunk_stream over a file
    (ingestion's path: a file read in blocks) against hashlib.file_digest of the same file."""
    data = os.urandom(size)
    path = root / "chunking.bin"
    path.write_bytes(data)

    def stream() -> int:
        with path.open("rb") as handle:
            return sum(1 for _ in chunk_stream(handle))

    def file_sha256() -> bytes:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").digest()

    def in_memory() -> int:
        return sum(1 for _ in chunk_bytes(data))

    def cpu(work: Callable[[], object]) -> float:
        start = process_cpu()
        work()
        return process_cpu() - start

    pairs = {
        "chunk_bytes (in memory)": (lambda: hashlib.sha256(data).digest(), in_memory),
        "chunk_stream (a file)": (file_sha256, stream),
    }
    megabytes = size / 1e6
    for label, (baseline, work) in pairs.items():
        # Each run times the baseline and the chunker back to back, so a burst of load on a
        # shared machine hits both alike; the median of the runs' ratios is printed.
        runs = [(timed(baseline), timed(work)) for _ in range(repeat)]
        ratio = statistics.median(sha / cut for sha, cut in runs)
        sha = statistics.median(sha for sha, _ in runs)
        cut = statistics.median(cut for _, cut in runs)
        # CPU time of both: their ratio is what the wall-clock ratio falls to when no core is
        # free for the hashing threads (every core busy with other work).
        sha_cpu = statistics.median(cpu(baseline) for _ in range(repeat))
        cut_cpu = statistics.median(cpu(work) for _ in range(repeat))
        print(
            f"{label}: chunk+hash {megabytes / cut:7.1f} MB/s vs sha256 {megabytes / sha:7.1f} "
            f"MB/s over {megabytes:.0f} MB: ratio {ratio:.2f}, median of {repeat} "
            f"(target >= 0.9); CPU {1000 * cut_cpu:.0f} vs {1000 * sha_cpu:.0f} ms "
            f"(ratio {sha_cpu / cut_cpu:.2f})"
        )
    path.unlink()


def sentences(count: int, run: int = 0) -> list[str]:
    rng = random.Random(20261130 + run)  # noqa: S311 - reproducible words, not secrets
    return [
        f"Note {run}-{index}: " + " ".join(rng.choice(_WORDS) for _ in range(12)) + ".\n"
        for index in range(count)
    ]


def small_text_files(
    engine: Engine,
    request: IngestRequest,
    root: Path,
    count: int,
    repeat: int,
    *,
    pgdata: Path,
) -> None:
    """Each run embeds new sentences (none already stored, so ingestion embeds them all), first
    with the embedder alone, then by ingesting them as files; the median of the runs' ratios
    is printed, and the CPU each took per sentence or file (this process's and PostgreSQL's)."""
    embedders = Embedders(shared_text_embedder())
    embedders.embed_texts(sentences(8, -1))  # load the model before anything is timed
    runs = []
    cpu = []
    for run in range(repeat):
        texts = sentences(count, run)
        folder = root / f"texts-{run}"
        folder.mkdir()
        for index, value in enumerate(texts):
            (folder / f"note-{index:05}.txt").write_text(value, encoding="utf-8")
        start = process_cpu()
        model = timed(lambda texts=texts: embedders.embed_texts(texts))
        model_cpu = process_cpu() - start
        start, server = process_cpu(), server_cpu(pgdata)
        ingest = timed(lambda folder=folder: ingest_paths(engine, request, [folder]))
        cpu.append((model_cpu, process_cpu() - start, server_cpu(pgdata) - server))
        runs.append((model, ingest))
    ratio = statistics.median(model / ingest for model, ingest in runs)
    model = statistics.median(model for model, _ in runs)
    ingest = statistics.median(ingest for _, ingest in runs)
    model_cpu, ingest_cpu, server = (
        1000 * statistics.median(c) / count for c in zip(*cpu, strict=True)
    )
    print(
        f"small text files: {count / ingest:6.0f} files/s vs the embedder's own "
        f"{count / model:6.0f} sentences/s on the same sentences: ratio {ratio:.2f}, median of "
        f"{repeat} (target >= 0.8); CPU per sentence: model alone {model_cpu:.2f} ms, "
        f"ingestion {ingest_cpu:.2f} ms in this process (model included) and "
        f"{server:.2f} ms in PostgreSQL"
    )


def small_binary_files(engine: Engine, request: IngestRequest, root: Path, count: int) -> None:
    folder = root / "blobs"
    folder.mkdir()
    for index in range(count):
        (folder / f"blob-{index:05}.bin").write_bytes(os.urandom(2048))
    ingest = timed(lambda: ingest_paths(engine, request, [folder]))
    print(
        f"small binary files (2 KiB, not embedded): {count / ingest:6.0f} files/s (target >= 1000)"
    )


def model_file(engine: Engine, request: IngestRequest) -> None:
    model = minilm_safetensors()
    megabytes = model.stat().st_size / 1e6
    first = timed(lambda: ingest_paths(engine, request, [model]))
    again = timed(lambda: ingest_paths(engine, request, [model]))
    print(
        f"first ingest of {model.name} ({megabytes:.1f} MB): {first:.2f} s, "
        f"{megabytes / first:.1f} MB/s; re-ingest {again:.2f} s ({again / first:.2f} of the first)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text-files", type=int, default=500)
    parser.add_argument("--binary-files", type=int, default=2000)
    parser.add_argument("--chunking-mib", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=7, help="runs of each chunking ratio")
    parser.add_argument("--text-repeat", type=int, default=3, help="runs of the text ratio")
    parser.add_argument("--only-chunking", action="store_true")
    arguments = parser.parse_args()
    print("load average (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))

    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        chunking_ratio(root, arguments.chunking_mib * 1024 * 1024, arguments.repeat)
        if arguments.only_chunking:
            return
        with EmbeddedPostgres(root / "data") as server:
            engine = create_engine(server.url)
            upgrade(engine)
            with engine.begin() as connection:
                ensure_tenant(connection, "bench", "Benchmark")
            request = IngestRequest("bench")
            small_text_files(
                engine,
                request,
                root,
                arguments.text_files,
                arguments.text_repeat,
                pgdata=server.layout.pgdata,
            )
            small_binary_files(engine, request, root, arguments.binary_files)
            model_file(engine, request)
            engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
