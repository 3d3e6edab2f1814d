"""A 200 MB upload to a real server process: its memory stays flat (streamed to disk)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.conftest import clean_environment

from .conftest import IssueKey, bearer
from .data_api_support import HANG_GUARD_SECONDS, TERMINAL

SIZE = 200 * 1024 * 1024
MIB = 1024 * 1024
SERVER = Path(__file__).with_name("app_server.py")


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = clean_environment()
    env["HARTONOMOUS_DATABASE__URL"] = database_url
    env["HARTONOMOUS_DATA_DIR"] = str(tmp_path / "data")
    env["HARTONOMOUS_SERVER__MAX_UPLOAD_BYTES"] = str(SIZE + MIB)
    process = subprocess.Popen(
        [sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "the API server exited before listening"
    url: str = json.loads(line)["url"]
    try:
        yield process, url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _big_file(path: Path) -> Path:
    # Random (nothing deduplicates), written a MiB at a time: the test holds no more either.
    generator = np.random.default_rng(200)
    with path.open("wb") as handle:
        for _ in range(SIZE // MIB):
            handle.write(generator.bytes(MIB))
    return path


def test_a_200_mb_upload_grows_server_memory_by_less_than_100_mb(
    server: tuple[subprocess.Popen[str], str], issue_key: IssueKey, tmp_path: Path
) -> None:
    process, url = server
    token = issue_key()
    big = _big_file(tmp_path / "big.bin")
    with httpx.Client(base_url=url, timeout=HANG_GUARD_SECONDS) as client:
        assert client.get("/health/live").status_code == 200
        before = _memory_kib(process.pid)["VmRSS"]
        with big.open("rb") as handle:
            answer = client.post(
                "/v1/ingest", headers=bearer(token), files={"files": ("big.bin", handle)}
            )
        assert answer.status_code == 202, answer.text
        after_upload = _memory_kib(process.pid)["VmHWM"]
        job = _wait(client, token, answer.json()["job_id"])
        peak = _memory_kib(process.pid)["VmHWM"]
    assert job["status"] == "completed", job
    assert job["files"][0]["new_bytes"] + job["files"][0]["reused_bytes"] == SIZE
    growth_upload_mib = (after_upload - before) / 1024
    growth_mib = (peak - before) / 1024
    print(
        f"server RSS before {before / 1024:.1f} MiB; peak growth after upload "
        f"{growth_upload_mib:.1f} MiB, after ingestion {growth_mib:.1f} MiB"
    )
    assert growth_upload_mib < 100
    assert growth_mib < 100
    assert not any((tmp_path / "data" / "uploads").rglob("*.bin"))


def _wait(client: httpx.Client, token: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()
        if job["status"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, job["status"]
        time.sleep(0.5)
