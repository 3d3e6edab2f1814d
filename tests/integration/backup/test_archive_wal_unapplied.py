"""The runbook's order (start `up`, then set `[backup] archive_wal = true`): the running
server still has `archive_mode=off`, and `status` says so with a FAIL that says to restart
`up` (docs/operations.md, "Provisioning"; real `up`, real PostgreSQL 18)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from tests.conftest import Cli, clean_environment
from tests.integration.test_up import RunningUp

HANG_GUARD_SECONDS = 180  # a shared, loaded machine: a hang guard, not a performance claim


def test_status_fails_while_the_running_server_ignores_archive_wal(data_dir: Path) -> None:
    env = clean_environment()
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    up = RunningUp(env, data_dir, log=data_dir / "up.log")
    try:
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while httpx.get(f"{up.url}/health/ready", timeout=30).json()["status"] != "ready":
            assert time.monotonic() < deadline, "up never became ready"
            time.sleep(0.5)
        asked = {**env, "HARTONOMOUS_BACKUP__ARCHIVE_WAL": "true"}
        result = Cli(env=asked, cwd=data_dir)("status")
    finally:
        up.stop()
    [line] = [line for line in result.stdout.splitlines() if "WAL archive age" in line]
    assert line.startswith("FAIL"), result.stdout
    assert "restart `up` to apply archive_wal" in line
    assert result.exit_code == 1
