"""Backups and point-in-time restore on the embedded PostgreSQL 18, through the real CLI."""

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


def separate_commit_times() -> None:
    # Commit timestamps must differ for a restore target between them to exist.
    time.sleep(0.05)


def test_restore_to_a_time_between_full_and_incremental_shows_exactly_that_state(
    live: Live, work: Path
) -> None:
    full = live.ok("backup", "full")["backup"]
    live.tenant("before-t")
    separate_commit_times()
    between = live.now()
    separate_commit_times()
    live.tenant("after-t")
    incremental = live.ok("backup", "incremental")["backup"]
    assert (incremental["kind"], incremental["parent"]) == ("incremental", full["backup_id"])
    live.tenant("after-incremental")
    live.conn.execute("SELECT pg_switch_wal()")  # the last segment reaches the archive

    listing = live.ok("backup", "list")
    assert [b["backup_id"] for b in listing["backups"]] == [
        full["backup_id"],
        incremental["backup_id"],
    ]
    assert live.ok("backup", "verify")["ok"] is True

    at_t = work / "at-t"
    restored = live.ok("restore", "latest", "--to-time", between, "--data-dir", str(at_t))
    assert restored["chain"] == [full["backup_id"]]
    assert tenants_of(at_t) == ["before-t"]

    # The newest state: full + incremental combined, then the archived WAL replayed.
    newest = work / "newest"
    restored = live.ok("restore", "latest", "--data-dir", str(newest))
    assert restored["chain"] == [full["backup_id"], incremental["backup_id"]]
    assert tenants_of(newest) == ["after-incremental", "after-t", "before-t"]
    # The live side is untouched.
    assert [r[0] for r in live.conn.execute("SELECT tenant_id FROM tenants ORDER BY 1")] == [
        "after-incremental",
        "after-t",
        "before-t",
    ]
