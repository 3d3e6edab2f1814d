"""The live embedded server (WAL archived into its backup directory) and the CLI on it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.conftest import Cli, clean_environment

from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import EmbeddedPostgres


@dataclass
class Live:
    """The live embedded server (WAL archived into its backup directory) and the CLI on it."""

    data_dir: Path
    backups: Path
    server: EmbeddedPostgres
    cli: Cli
    conn: psycopg.Connection[Any]

    def ok(self, *args: str) -> dict[str, Any]:
        result = self.cli("--json", *args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def tenant(self, tenant_id: str) -> None:
        self.conn.execute(
            "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s)", (tenant_id, tenant_id)
        )

    def archived_segment(self) -> str:
        """Close the current WAL segment and wait until it is archived; its file name."""
        row = self.conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        segment = str(row[0])
        deadline = time.monotonic() + 60
        while not (self.backups / "wal" / segment).is_file():
            assert time.monotonic() < deadline, f"{segment} was not archived within 60 s"
            time.sleep(0.1)
        return segment

    def now(self) -> str:
        row = self.conn.execute("SELECT now()").fetchone()
        assert row is not None
        return str(row[0].isoformat())


def cli_for(data_dir: Path, cwd: Path) -> Cli:
    env = clean_environment()
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    env["HARTONOMOUS_BACKUP__ARCHIVE_WAL"] = "true"
    return Cli(env=env, cwd=cwd)


@pytest.fixture
def work(data_dir: Path) -> Path:
    """Where this test's clusters live (reachable by the server's user, unlike tmp_path)."""
    return data_dir


@pytest.fixture
def live(work: Path) -> Iterator[Live]:
    data_dir = work / "live"
    backups = data_dir / "backups"
    server = EmbeddedPostgres(data_dir, archive_dir=backups / "wal")
    server.start()
    try:
        cli = cli_for(data_dir, work)
        assert cli("db", "upgrade").exit_code == 0
        with psycopg.connect(libpq_url(server.url), autocommit=True) as conn:
            yield Live(data_dir, backups, server, cli, conn)
    finally:
        server.stop()


def tenants_of(data_dir: Path) -> list[str]:
    with EmbeddedPostgres(data_dir) as server, psycopg.connect(libpq_url(server.url)) as conn:
        return [row[0] for row in conn.execute("SELECT tenant_id FROM tenants ORDER BY 1")]


def refused(live: Live, *args: str) -> str:
    """Run a command that must fail; its one-line error."""
    result = live.cli(*args)
    assert result.exit_code != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
