"""Chunk+hash throughput against plain hashlib.sha256 over the same bytes, in the same run.

Target: chunk+hash MB/s >= 0.5 x sha256 MB/s. Run: ``python benchmarks/chunking.py [--size-mib N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import time
from collections.abc import Callable

import pyfastcdc

from hartonomous.atoms.chunking import chunk_bytes, chunk_stream

TARGET_RATIO = 0.5


def best_seconds(work: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    data = os.urandom(args.size_mib * 1024 * 1024)
    megabytes = len(data) / 1e6
    chunk_count = sum(1 for _ in chunk_bytes(data))

    timings = {
        "hashlib.sha256 (whole buffer)": best_seconds(
            lambda: hashlib.sha256(data).digest(), args.repeat
        ),
        "chunk_bytes + sha256 per chunk": best_seconds(
            lambda: sum(1 for _ in chunk_bytes(data)), args.repeat
        ),
        "chunk_stream(BytesIO) + sha256 per chunk": best_seconds(
            lambda: sum(1 for _ in chunk_stream(io.BytesIO(data))), args.repeat
        ),
    }

    backend = pyfastcdc.FastCDC.__module__
    mean_kib = len(data) / chunk_count / 1024
    print(f"pyfastcdc {pyfastcdc.__version__} ({backend}), {megabytes:.0f} MB of random bytes")
    print(f"{chunk_count} chunks, mean {mean_kib:.1f} KiB, best of {args.repeat}")
    baseline = megabytes / timings["hashlib.sha256 (whole buffer)"]
    for name, seconds in timings.items():
        rate = megabytes / seconds
        print(f"  {name:42s} {rate:8.1f} MB/s  ratio {rate / baseline:.2f}")
    worst = min(megabytes / s for s in timings.values()) / baseline
    verdict = "meets" if worst >= TARGET_RATIO else "MISSES"
    print(f"worst chunking ratio {worst:.2f} {verdict} the {TARGET_RATIO} x sha256 target")


if __name__ == "__main__":
    main()
