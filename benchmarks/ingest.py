"""Ingestion throughput, measured in one run on a fresh embedded PostgreSQL.

Prints: chunk+hash MB/s against plain hashlib.sha256 over the same bytes (target >= 0.5x);
first ingest of the 90 MB all-MiniLM-L6-v2 safetensors file in MB/s (target >= 60 MB/s) and its
re-ingest time (target <= 1/3 of the first); small text files per second.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine

from hartonomous.atoms.chunking import chunk_bytes
from hartonomous.db import EmbeddedPostgres, upgrade
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.ops.sample_content import minilm_safetensors
from hartonomous.security import ensure_tenant


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def chunking_ratio(size: int) -> None:
    data = os.urandom(size)
    sha = min(timed(lambda: hashlib.sha256(data).digest()) for _ in range(3))
    cut = min(timed(lambda: sum(1 for _ in chunk_bytes(data))) for _ in range(3))
    megabytes = size / 1e6
    print(
        f"chunk+hash {megabytes / cut:8.1f} MB/s vs sha256 {megabytes / sha:8.1f} MB/s "
        f"over {megabytes:.0f} MB: ratio {sha / cut:.2f} (target >= 0.5)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small-files", type=int, default=500)
    arguments = parser.parse_args()
    chunking_ratio(128 * 1024 * 1024)

    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        with EmbeddedPostgres(root / "data") as server:
            engine = create_engine(server.url)
            upgrade(engine)
            with engine.begin() as connection:
                ensure_tenant(connection, "bench", "Benchmark")
            request = IngestRequest("bench")
            model = minilm_safetensors()
            megabytes = model.stat().st_size / 1e6
            first = timed(lambda: ingest_paths(engine, request, [model]))
            again = timed(lambda: ingest_paths(engine, request, [model]))
            print(
                f"first ingest of {model.name} ({megabytes:.1f} MB): {first:.2f} s, "
                f"{megabytes / first:.1f} MB/s (target >= 60)"
            )
            print(f"re-ingest: {again:.2f} s = {again / first:.2f} of the first (target <= 0.33)")
            texts = root / "texts"
            texts.mkdir()
            for index in range(arguments.small_files):
                (texts / f"note-{index:05}.txt").write_text(
                    f"Note {index}\n\nShared paragraph for every note.\n\n{os.urandom(64).hex()}\n"
                )
            small = timed(lambda: ingest_paths(engine, request, [texts]))
            print(
                f"small text files: {arguments.small_files / small:.0f} files/s "
                f"({arguments.small_files} files in {small:.2f} s)"
            )
            engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
