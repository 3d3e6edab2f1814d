"""A cron `status` on a stopped install (it starts the embedded server itself) does not grow
the WAL archive: with archiving on, every stop of the server would rotate a 16 MiB segment
into it (real PostgreSQL 18 archiving into `<backup directory>/wal`)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import psycopg
from tests.conftest import Cli

from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import EmbeddedPostgres

SEGMENT = re.compile(r"^[0-9A-F]{24}$")


def archived(data_dir: Path) -> list[str]:
    wal = data_dir / "backups" / "wal"
    return sorted(p.name for p in wal.iterdir() if SEGMENT.match(p.name)) if wal.exists() else []


def test_two_status_runs_on_a_stopped_install_archive_no_segment(
    embedded_cli: Cli, data_dir: Path
) -> None:
    env = {**embedded_cli.env, "HARTONOMOUS_BACKUP__ARCHIVE_WAL": "true"}
    cli = Cli(env=env, cwd=embedded_cli.cwd)
    made = cli("db", "upgrade")
    assert made.exit_code == 0, made.stderr
    before = archived(data_dir)
    assert before, "db upgrade's server archived (the archive is live)"
    for _ in range(2):
        result = cli("status")
        assert "overall" in result.stdout, result.stderr
        # Not archiving is this command's own choice, not a server to restart.
        assert "restart `up`" not in result.stdout, result.stdout
    assert archived(data_dir) == before
    # A command that may write still starts an archiving server.
    again = cli("db", "upgrade")
    assert again.exit_code == 0, again.stderr
    assert len(archived(data_dir)) > len(before)


def test_read_only_commands_on_a_stopped_install_archive_no_segment(
    embedded_cli: Cli, data_dir: Path
) -> None:
    """Every command that only reads (lists, shows, status reports) starts a server that does
    not archive, as `status` does."""
    env = {**embedded_cli.env, "HARTONOMOUS_BACKUP__ARCHIVE_WAL": "true"}
    cli = Cli(env=env, cwd=embedded_cli.cwd)
    assert cli("db", "upgrade").exit_code == 0
    assert cli("tenants", "create", "acme").exit_code == 0
    before = archived(data_dir)
    for command in (
        ("tenants", "list"),
        ("tenants", "show", "acme"),
        ("principals", "list", "acme"),
        ("keys", "list", "acme"),
        ("broker", "status"),
        ("graph", "status"),
        ("deadletters", "list"),
        ("models", "list", "--tenant", "acme"),
        ("holdings", "list", "--tenant", "acme"),
        ("billing", "plans", "list"),
    ):
        result = cli(*command)
        assert result.exit_code == 0, (command, result.stderr)
        assert archived(data_dir) == before, command


def _archive_mode(server: EmbeddedPostgres) -> str:
    with psycopg.connect(libpq_url(server.url), autocommit=True) as conn:
        row = conn.execute("SHOW archive_mode").fetchone()
    assert row is not None
    return str(row[0])


def test_a_writing_start_restarts_a_read_only_commands_server_archiving_once_it_left(
    data_dir: Path,
) -> None:
    """`up` (or any writing command) joining the server a cron `status` started without
    archiving waits for that command to finish, then restarts the server archiving: the
    reader's session is never cut, and the writer's changes reach the archive."""
    archive = data_dir / "backups" / "wal"
    reader = EmbeddedPostgres(data_dir, archive_dir=archive, read_only=True)
    reader.start()
    writer = EmbeddedPostgres(data_dir, archive_dir=archive)
    try:
        assert _archive_mode(reader) == "off"
        starting = threading.Thread(target=writer.start)
        starting.start()
        time.sleep(0.5)  # the writer is waiting now (not a measurement)
        # Not restarted under the reader: its server still answers, still not archiving.
        assert _archive_mode(reader) == "off"
    finally:
        reader.stop()
    starting.join(timeout=120)
    try:
        assert not starting.is_alive()
        assert _archive_mode(writer) == "on"
    finally:
        writer.stop()
