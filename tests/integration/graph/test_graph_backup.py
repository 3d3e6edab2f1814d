"""`graph backup` / `graph restore` through the CLI with a real neo4j-admin: Neo4j 5's own
`org.neo4j.cli.AdminTool` (what the `neo4j-admin` script of an installation runs) from the
test server's Maven Central jars, over the data directory of the session's test server, which
the test stops for the dump and load (Community needs a stopped database) and restarts."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from neo4j import GraphDatabase
from tests.conftest import Cli, clean_environment
from tests.neo4j_server import TARGET, Neo4jServer, build_launcher


def _installation(root: Path, data: Path) -> Path:
    """A NEO4J_HOME whose conf names ``data`` and whose bin/neo4j-admin runs Neo4j's admin
    tool from the test server's jars."""
    build_launcher()
    home = root / "neo4j-home"
    (home / "conf").mkdir(parents=True)
    (home / "bin").mkdir()
    (home / "conf" / "neo4j.conf").write_text(f"server.directories.data={data}\n")
    admin = home / "bin" / "neo4j-admin"
    # A short-lived tool: the client compiler and serial GC start it sooner, as Kafka's
    # scripts do for theirs.
    admin.write_text(
        "#!/bin/sh\nexec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
        f"-cp '{TARGET}/lib/*' org.neo4j.cli.AdminTool \"$@\"\n"
    )
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
def test_graph_backup_and_restore_round_trip_through_neo4j_admin(
    tmp_path: Path, neo4j_server: Neo4jServer
) -> None:
    assert neo4j_server.data_directory is not None
    data, dumps = neo4j_server.data_directory, tmp_path / "dumps"
    env = clean_environment()
    env["HARTONOMOUS_DATA_DIR"] = str(tmp_path)
    cli = Cli(env=env, cwd=tmp_path)
    # No installation named: one line naming what is missing and the way without it.
    missing = _one_line_error(cli, "graph", "backup", "--to", str(dumps))
    assert "needs Neo4j's neo4j-admin" in missing
    assert "graph catch-up" in missing
    env["NEO4J_HOME"] = str(_installation(tmp_path, data))

    uri = neo4j_server.uri
    port = int(uri.rsplit(":", 1)[1])
    _create(uri, 1, 2)
    try:
        # Community dumps only a stopped database: neo4j-admin's refusal, in one line.
        running = _one_line_error(cli, "graph", "backup", "--to", str(dumps))
        assert running.startswith("hartonomous: error: neo4j-admin database dump failed:")
        neo4j_server.stop()
        try:
            # The harness's stop: the JVM ended cleanly, its files are gone, the port is free
            # (tests/neo4j_server.py; the data directory stays for the restart).
            assert neo4j_server.process.returncode == 0
            assert not neo4j_server.working_directory.exists()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port)).close()
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
        finally:
            neo4j_server.restart()
        assert neo4j_server.uri == uri
        assert _ids(uri) == [1, 2]
    finally:
        with GraphDatabase.driver(uri) as driver:
            driver.execute_query("MATCH (n:Probe) DETACH DELETE n")
