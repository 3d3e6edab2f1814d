"""`[backup] archive_timeout_seconds` on the embedded server: a change on a quiet system is
archived without anyone switching the segment, and `status` fails "WAL archive age" when
the archive stops taking segments (real PostgreSQL 18, real archive_command)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from tests.integration.backup.conftest import cli_for

from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import EmbeddedPostgres

TIMEOUT_SECONDS = 1


def wait_for(condition: str, check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{condition}: not within {seconds} s"
        time.sleep(0.2)


def archive_age_check(cli_result_stdout: str) -> dict[str, str]:
    (check,) = [
        c for c in json.loads(cli_result_stdout)["checks"] if c["name"] == "WAL archive age"
    ]
    return check  # type: ignore[no-any-return]


# ~15 s under load: a server, `db upgrade`, two `status` runs and a 5-timeout stall.
def test_a_quiet_change_is_archived_and_a_stalled_archive_fails_status(data_dir: Path) -> None:
    wal = data_dir / "backups" / "wal"
    server = EmbeddedPostgres(data_dir, archive_dir=wal, archive_timeout_seconds=TIMEOUT_SECONDS)
    server.start()
    try:
        cli = cli_for(data_dir, data_dir)
        cli.env["HARTONOMOUS_BACKUP__ARCHIVE_TIMEOUT_SECONDS"] = str(TIMEOUT_SECONDS)
        assert cli("db", "upgrade").exit_code == 0
        with psycopg.connect(libpq_url(server.url), autocommit=True) as conn:
            conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('q', 'q')")
            row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
            assert row is not None
            # Nobody switches the segment: archive_timeout does.
            wait_for(f"{row[0]} archived", (wal / row[0]).is_file)
            check = archive_age_check(cli("--json", "status").stdout)
            assert check["verdict"] == "OK", check
            assert f"(archive_timeout {TIMEOUT_SECONDS} s)" in check["detail"]

            wal.chmod(0o555)  # the archive_command's copy is refused from now on
            try:
                conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('r', 'r')")
                waited = (
                    "SELECT extract(epoch FROM now() - min(modification)) > %s "
                    "FROM pg_ls_archive_statusdir() WHERE name LIKE '%%.ready'"
                )

                def stalled() -> bool:
                    found = conn.execute(waited, (5 * TIMEOUT_SECONDS,)).fetchone()
                    return bool(found and found[0])

                wait_for("a segment waiting past 5 timeouts", stalled)
                status = cli("--json", "status")
                assert status.exit_code == 1
                check = archive_age_check(status.stdout)
                assert check["verdict"] == "FAIL", check
                assert "completed segment(s) not archived, the oldest waiting" in check["detail"]
            finally:
                wal.chmod(0o755)
    finally:
        server.stop()
