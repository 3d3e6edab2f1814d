"""`backup` on a configured server (database.url): pg_basebackup over its URL, and `--keep`."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from tests.conftest import Cli

from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import give_to_server_user


def ok(cli: Cli, *args: str) -> dict[str, object]:
    result = cli("--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_keep_removes_older_chains_and_the_wal_they_alone_needed(
    cli: Cli, database_url: str, data_dir: Path
) -> None:
    first = ok(cli, "backup", "full")["backup"]
    second = ok(cli, "backup", "incremental")
    assert second["backup"]["parent"] == first["backup_id"]  # type: ignore[index]
    wal = data_dir / "backups" / "wal"
    wal.mkdir()
    give_to_server_user(wal)
    old_segment = wal / "000000010000000000000001"
    old_segment.write_bytes(b"")
    old_history = wal / "000000010000000000000001.00000028.backup"  # a removed backup's
    old_history.write_text("START WAL LOCATION: 0/1000028 (file 000000010000000000000001)\n")
    third = ok(cli, "backup", "full", "--keep", "1")
    kept = third["backup"]["backup_id"]  # type: ignore[index]
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute(
            "SELECT pg_walfile_name(%s::pg_lsn)",
            (third["backup"]["start_lsn"],),  # type: ignore[index]
        ).fetchone()
    assert row is not None
    assert third["retention"]["removed"] == [  # type: ignore[index]
        first["backup_id"],  # type: ignore[index]
        second["backup"]["backup_id"],  # type: ignore[index]
    ]
    assert third["retention"]["wal_kept_from"] == row[0]  # type: ignore[index]
    assert not old_segment.exists()
    assert not old_history.exists()
    listing = ok(cli, "backup", "list")
    assert [b["backup_id"] for b in listing["backups"]] == [kept]  # type: ignore[attr-defined]
    assert ok(cli, "backup", "verify")["ok"] is True
    refused = cli("backup", "full", "--keep", "0")
    assert refused.exit_code == 2
