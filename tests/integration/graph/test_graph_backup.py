"""`graph backup` / `graph restore` through the CLI with a real neo4j-admin: Neo4j 5's own
`org.neo4j.cli.AdminTool` (what the `neo4j-admin` script of an installation runs) from the
test server's Maven Central jars, over the test server's data directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from neo4j import GraphDatabase
from tests.conftest import Cli, clean_environment
from tests.integration.sync.test_sync_faults import free_port
from tests.neo4j_server import TARGET, build_launcher, start_neo4j


def _installation(root: Path, data: Path) -> Path:
    """A NEO4J_HOME whose conf names ``data`` and whose bin/neo4j-admin runs Neo4j's admin
    tool from the test server's jars."""
    build_launcher()
    home = root / "neo4j-home"
    (home / "conf").mkdir(parents=True)
    (home / "bin").mkdir()
    (home / "conf" / "neo4j.conf").write_text(f"server.directories.data={data}\n")
    admin = home / "bin" / "neo4j-admin"
    admin.write_text(f"#!/bin/sh\nexec java -cp '{TARGET}/lib/*' org.neo4j.cli.AdminTool \"$@\"\n")
    admin.chmod(0o755)
    return home


def _ids(uri: str) -> list[int]:
    with GraphDatabase.driver(uri) as driver:
        records, _, _ = driver.execute_query("MATCH (n:Probe) RETURN n.id AS id ORDER BY id")
    return [record["id"] for record in records]


def _create(uri: str, *ids: int) -> None:
    with GraphDatabase.driver(uri) as driver:
        driver.execute_query("UNWIND $ids AS id CREATE (:Probe {id: id})", ids=list(ids))


def _one_line_error(cli: Cli, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
def test_graph_backup_and_restore_round_trip_through_neo4j_admin(tmp_path: Path) -> None:
    data, dumps = tmp_path / "neo4j-data", tmp_path / "dumps"
    env = clean_environment()
    env["HARTONOMOUS_DATA_DIR"] = str(tmp_path)
    cli = Cli(env=env, cwd=tmp_path)
    # No installation named: one line naming what is missing and the way without it.
    missing = _one_line_error(cli, "graph", "backup", "--to", str(dumps))
    assert "needs Neo4j's neo4j-admin" in missing
    assert "graph catch-up" in missing
    env["NEO4J_HOME"] = str(_installation(tmp_path, data))

    port = free_port()
    server = start_neo4j(tmp_path / "first", port, data)
    try:
        _create(server.uri, 1, 2)
        # Community dumps only a stopped database: neo4j-admin's refusal, in one line.
        running = _one_line_error(cli, "graph", "backup", "--to", str(dumps))
        assert running.startswith("hartonomous: error: neo4j-admin database dump failed:")
    finally:
        server.stop()
    backup = cli("--json", "graph", "backup", "--to", str(dumps))
    assert backup.exit_code == 0, backup.stderr
    dumped = json.loads(backup.stdout)
    assert dumped["path"] == str(dumps / "neo4j.dump")
    assert dumped["size_bytes"] > 0
    again = _one_line_error(cli, "graph", "backup", "--to", str(dumps))
    assert "neo4j.dump exists" in again

    # The disaster: Neo4j's store is gone. The restore brings the dump's graph back.
    for store in ("databases", "transactions"):
        shutil.rmtree(data / store / "neo4j")
    restored = cli("graph", "restore", "--from", str(dumps))
    assert restored.exit_code == 0, restored.stderr
    assert "graph catch-up" in restored.stdout
    server = start_neo4j(tmp_path / "second", port, data)
    try:
        assert _ids(server.uri) == [1, 2]
    finally:
        server.stop()
