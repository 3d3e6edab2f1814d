"""Ctrl-C during `hartonomous ingest` with output to a pipe: exit 130, a one-line reason on
stderr, and the job marked `interrupted`.

Made deterministic without timing as in test_ingest_interrupted.py: an uncommitted row for the
first chunk of the second file blocks the ingestion (a real lock wait in PostgreSQL) after the
first file is committed; SIGINT is sent while it waits."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from tests.conftest import Cli
from tests.integration.data_plane.data_plane_support import add_tenant, random_bytes
from tests.integration.test_ingest_interrupted import (
    _FILE_SIZE,
    block_on_first_chunk,
    wait_for_first_file_then_lock,
)

from hartonomous.db.tables import ingestion_jobs


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_mid_folder_says_interrupted_and_exits_130(
    engine: Engine, cli: Cli, tmp_path: Path, as_json: bool
) -> None:
    add_tenant(engine, "acme")
    folder = tmp_path / "folder"
    folder.mkdir()
    contents = {f"f{i}.bin": random_bytes(_FILE_SIZE, seed=200 + i) for i in range(1, 4)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    command = [sys.executable, "-m", "hartonomous", *(["--json"] if as_json else [])]

    with engine.connect() as blocker:
        block_on_first_chunk(blocker, contents["f2.bin"])
        process = subprocess.Popen(
            [*command, "ingest", str(folder), "--tenant", "acme"],
            env=cli.env,
            cwd=cli.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_first_file_then_lock(engine)
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=240)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        blocker.rollback()

    assert process.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    if as_json:
        assert "interrupted" in json.loads(line)["error"]
    else:
        assert line.startswith("hartonomous: error: interrupted")
    with engine.connect() as connection:
        status = connection.execute(select(ingestion_jobs.c.status)).scalar_one()
    assert status == "interrupted"
