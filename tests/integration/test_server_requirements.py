"""What happens on a server that lacks what the platform needs (a real server each time)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.conftest import Cli, clean_environment
from tests.integration.server_support import copied_install, refused_upgrade

from hartonomous.api import create_app
from hartonomous.config import Settings
from hartonomous.db import EmbeddedPostgres, downgrade, head_revision
from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import SYSTEM_USER_WHEN_ROOT, install_dir
from hartonomous.services import Platform


def _pg_ctl(server: EmbeddedPostgres, *args: str) -> None:
    as_root = os.geteuid() == 0
    subprocess.run(
        [str(install_dir() / "bin" / "pg_ctl"), "-D", str(server.layout.pgdata), *args],
        check=True,
        capture_output=True,
        user=SYSTEM_USER_WHEN_ROOT if as_root else None,
        group=SYSTEM_USER_WHEN_ROOT if as_root else None,
        extra_groups=[] if as_root else None,
        cwd="/",
    )


@pytest.fixture
def server_without_pgvector(data_root: Path, data_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL built from the same binaries, minus the pgvector files."""
    install = copied_install(
        data_root,
        "without-vector",
        ignore=lambda _dir, names: [n for n in names if n.startswith("vector")],
    )
    with EmbeddedPostgres(data_dir, install=install) as server:
        yield server


def test_server_without_pgvector_is_refused_clearly(
    server_without_pgvector: EmbeddedPostgres, data_dir: Path
) -> None:
    line = refused_upgrade(server_without_pgvector, data_dir)
    assert "the pgvector extension is not available on that server" in line


@pytest.fixture
def server_with_replica_wal(data_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A running server that somebody else started with wal_level = replica."""
    server = EmbeddedPostgres(data_dir)
    server.start()
    server.stop()
    socket_dir = str(server.layout.socket_dir)
    _pg_ctl(
        server,
        "start",
        "-w",
        "-l",
        str(server.layout.pgdata / "replica.log"),
        "-o",
        f"-c wal_level=replica -c listen_addresses='' -k {socket_dir}",
    )
    yield server
    _pg_ctl(server, "stop", "-m", "immediate")


def test_wal_level_not_logical_is_reported_not_fatal(
    server_with_replica_wal: EmbeddedPostgres, data_dir: Path
) -> None:
    env = clean_environment()
    env["HARTONOMOUS_DATABASE__URL"] = server_with_replica_wal.url
    cli = Cli(env=env, cwd=data_dir)
    upgraded = cli("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert "wal_level_not_logical" in upgraded.stderr
    status = json.loads(cli("--json", "db", "status").stdout)
    assert status["wal_level"] == "replica"
    smoke = cli("smoke")
    assert smoke.exit_code == 1
    assert "FAIL wal_level logical: wal_level is replica" in smoke.stdout


def test_embedded_start_restarts_a_server_without_logical_decoding(
    server_with_replica_wal: EmbeddedPostgres, data_dir: Path
) -> None:
    embedded = EmbeddedPostgres(data_dir)
    embedded.start()
    try:
        import psycopg

        with psycopg.connect(libpq_url(embedded.url)) as connection:
            row = connection.execute("SHOW wal_level").fetchone()
        assert row == ("logical",)
    finally:
        embedded.stop()
    # stop() was the last user: the server is down; restart the fixture's so its teardown works.
    _pg_ctl(
        server_with_replica_wal,
        "start",
        "-w",
        "-l",
        str(embedded.layout.pgdata / "restart.log"),
        "-o",
        f"-c listen_addresses='' -k {embedded.layout.socket_dir}",
    )


def test_ready_is_503_when_migrations_are_behind(engine: Engine) -> None:
    client = TestClient(create_app(Platform(engine, Settings(), head_revision())))
    assert client.get("/health/ready").status_code == 200
    downgrade(engine, "0001")
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "migrations at 0001" in response.json()["detail"]


def test_ready_is_503_when_the_database_is_gone(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    server.start()
    from sqlalchemy import create_engine

    from hartonomous.db import upgrade

    engine = create_engine(server.url)
    upgrade(engine)
    client = TestClient(create_app(Platform(engine, Settings(), head_revision())))
    assert client.get("/health/ready").status_code == 200
    server.stop()
    engine.dispose()
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert "database unavailable" in response.json()["detail"]
