"""`backup list` and `backup verify` as an operator reads them: a missing backup directory is
named, columns line up, an incremental fails with its failing parent, each FAIL line names its
backup once; `restore` onto a running cluster's own directory says it runs (real PostgreSQL 18
backups, real pg_verifybackup)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.backup.conftest import Live, refused


def _tamper(live: Live, backup_id: str) -> None:
    conf = live.backups / "base" / backup_id / "postgresql.conf"
    conf.write_bytes(conf.read_bytes().replace(b"#", b";", 1))


# ~40 s under load: a live server, a full and an incremental backup, three verifications.
def test_list_columns_and_a_missing_directory_then_an_incremental_fails_with_its_parent(
    live: Live, work: Path
) -> None:
    full = live.ok("backup", "full")["backup"]["backup_id"]
    live.tenant("after-full")
    incremental = live.ok("backup", "incremental")["backup"]["backup_id"]
    (live.backups / "base" / "20261201T000000Z-full").mkdir()  # interrupted: no info file

    listed = live.cli("backup", "list")
    assert listed.exit_code == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [full, incremental, "20261201T000000Z-full"]
    # Fixed widths from the data: each column starts where it does on every other line.
    for column in ("full ", "finished ", "INCOMPLETE"):
        starts = {row.find(column) for row in rows if column in row}
        assert len(starts) == 1, (column, rows)
    assert rows[0].find("finished ") == rows[2].find("(interrupted")
    ends = {row.index(" bytes") for row in rows[:2]}
    assert len(ends) == 1, rows  # sizes flush right

    # A directory that does not exist is named, like verify and restore name it.
    missing = work / "no-such-backups"
    for command in (("backup", "list"), ("backup", "verify")):
        error = refused(live, *command, "--backup-dir", str(missing))
        assert error == (
            f"hartonomous: error: backup directory {missing} does not exist: check "
            "--backup-dir or [backup] directory (it is made by the first `hartonomous backup full`)"
        ), error
    error = refused(
        live, "restore", "latest", "--data-dir", str(work / "t"), "--backup-dir", str(missing)
    )
    assert f"backup directory {missing} does not exist" in error
    empty = work / "empty-backups"
    empty.mkdir()
    listed = live.cli("--json", "backup", "list", "--backup-dir", str(empty))
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout)["backups"] == []

    # The full backup tampered: the incremental on it is no better.
    _tamper(live, full)
    verified = live.cli("backup", "verify")
    assert verified.exit_code == 1
    assert "2 backup(s) failed verification" in verified.stderr
    lines = verified.stdout.splitlines()
    (full_line,) = [line for line in lines if line.startswith(f"{full}: ")]
    assert full_line.startswith(f"{full}: FAIL pg_verifybackup: error: checksum mismatch")
    assert full_line.count(full) == 1, full_line  # the id is not repeated
    (incremental_line,) = [line for line in lines if line.startswith(f"{incremental}: ")]
    assert incremental_line.startswith(
        f"{incremental}: FAIL it is incremental to {full}, which failed verification: "
        "pg_verifybackup: error: checksum mismatch"
    ), incremental_line
    alone = live.cli("--json", "backup", "verify", incremental)
    assert alone.exit_code == 1
    (report,) = json.loads(alone.stdout.strip().splitlines()[-1])["backups"]
    assert report["ok"] is False
    assert f"incremental to {full}, which failed verification" in report["error"]

    # Restore onto the running cluster's own directory: refused, saying it runs.
    pgdata = live.data_dir / "pgdata"
    error = refused(live, "restore", "latest", "--data-dir", str(pgdata))
    assert f"restore target {pgdata} is not empty (a server is running on it)" in error


# ~40 s under load: a live server, one full backup, verifications and refused restores.
def test_files_pg_verifybackup_skips_are_checked_against_the_manifest(
    live: Live, work: Path
) -> None:
    full = live.ok("backup", "full")["backup"]["backup_id"]
    backup = live.backups / "base" / full
    auto_conf = backup / "postgresql.auto.conf"
    original = auto_conf.read_bytes()
    assert live.ok("backup", "verify", full)["ok"] is True

    # The same size, one setting slipped in: pg_verifybackup alone passes this.
    tampered = original.replace(b"#", b"w", 1)
    assert tampered != original
    assert len(tampered) == len(original)
    auto_conf.write_bytes(tampered)
    verified = live.cli("backup", "verify", full)
    assert verified.exit_code == 1
    assert f'{full}: FAIL checksum mismatch for file "postgresql.auto.conf"' in verified.stdout
    target = work / "target"
    error = refused(live, "restore", full, "--data-dir", str(target))
    assert error == (
        f"hartonomous: error: backup {full} failed verification: checksum mismatch for file "
        '"postgresql.auto.conf"'
    ), error
    assert not target.exists()
    auto_conf.write_bytes(original + b"work_mem = '1GB'\n")
    verified = live.cli("backup", "verify", full)
    assert '"postgresql.auto.conf" has size' in verified.stdout, verified.stdout

    # A signal file the manifest does not list would start the restored server as a standby.
    auto_conf.write_bytes(original)
    (backup / "standby.signal").touch()
    error = refused(live, "restore", full, "--data-dir", str(target))
    assert '"standby.signal" is present on disk but not in the manifest' in error, error
    (backup / "standby.signal").unlink()
    assert live.ok("backup", "verify", full)["ok"] is True
