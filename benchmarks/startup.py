"""Seconds from `hartonomous up` to a ready /health/ready: first (cold) start and warm restarts.

Cold = a new data directory (initdb, migrations, seed). Warm = the same directory again.
Targets on a 2-core machine: warm <= 3 s, cold <= 10 s. Also prints how long a SIGTERM stop takes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def start_and_stop(data_dir: Path) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARTONOMOUS_")}
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "hartonomous", "--json", "up", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    url = json.loads(process.stdout.readline())["url"]
    while httpx.get(f"{url}/health/ready", timeout=5).status_code != 200:
        time.sleep(0.01)
    ready = time.perf_counter() - started
    stopping = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return ready, time.perf_counter() - stopping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm-runs", type=int, default=5)
    arguments = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        cold, cold_stop = start_and_stop(root / "data")
        warm = [start_and_stop(root / "data") for _ in range(arguments.warm_runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    warm_ready = [ready for ready, _ in warm]
    stops = [cold_stop, *(stop for _, stop in warm)]
    print(f"cold start to ready: {cold:.2f} s (target <= 10 s)")
    print(
        f"warm start to ready: median {statistics.median(warm_ready):.2f} s, "
        f"min {min(warm_ready):.2f} s, max {max(warm_ready):.2f} s over {len(warm)} runs "
        "(target <= 3 s)"
    )
    print(f"SIGTERM to exit: median {statistics.median(stops):.2f} s, max {max(stops):.2f} s")


if __name__ == "__main__":
    main()
