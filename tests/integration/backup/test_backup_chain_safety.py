"""Issue 16's third trial: backups never become unrestorable behind the operator's back. A
backup or retention run holds the backup directory's lock (a second one is refused naming the
holder's pid); an incremental refuses a chain that does not verify; `restore latest` passes over
a broken newest chain to the newest restorable one, saying so; `status` judges the newest
restorable backup, not the newest one (real PostgreSQL 18, real pg_basebackup/pg_verifybackup).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.integration.backup.conftest import Live, cli_for, refused, tenants_of

from hartonomous.backup.catalog import remove_backup
from hartonomous.backup.lock import backup_lock


def _last_backup_check(live: Live) -> dict[str, str]:
    result = live.cli("--json", "status")
    (check,) = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "last backup"]
    return check  # type: ignore[no-any-return]


# ~60 s under load: a live server, three backups, two refused ones, a status and a restore.
def test_a_running_backup_locks_retention_out_and_a_broken_chain_is_never_built_on_or_restored(
    live: Live, work: Path
) -> None:
    older = live.ok("backup", "full")["backup"]["backup_id"]
    live.tenant("before-chain")
    full = live.ok("backup", "full")["backup"]["backup_id"]
    incremental = live.ok("backup", "incremental")["backup"]["backup_id"]
    assert _last_backup_check(live)["verdict"] == "OK"

    # A backup runs (this process holds the lock): another backup and retention are refused.
    with backup_lock(live.backups):
        for command in (("backup", "incremental"), ("backup", "full", "--keep", "1")):
            error = refused(live, *command)
            assert error == (
                f"hartonomous: error: another backup is running (pid {os.getpid()}) on "
                f"{live.backups}: wait for it to end, then run this again"
            ), error
    assert [b["backup_id"] for b in live.ok("backup", "list")["backups"]] == [
        older,
        full,
        incremental,
    ]

    # What the unlocked race left: the incremental's full removed under it.
    remove_backup(live.backups, full)
    error = refused(live, "backup", "incremental")
    assert error == (
        f"hartonomous: error: cannot take an incremental backup on {incremental}, the newest "
        f"backup: its chain does not verify (backup {incremental} needs {full}, which is "
        "gone); run `hartonomous backup full`"
    ), error
    assert [b["backup_id"] for b in live.ok("backup", "list")["backups"]] == [older, incremental]

    check = _last_backup_check(live)
    assert check["verdict"] == "WARN", check
    assert check["detail"].startswith(
        f"newest backup {incremental} is not restorable (backup {incremental} needs {full}, "
        f"which is gone); newest restorable {older} finished "
    ), check

    # `restore latest` restores the newest restorable chain and says what it skipped, why.
    live.tenant("after-chain")
    live.archived_segment()
    target = work / "restored"
    result = live.cli("--json", "restore", "latest", "--data-dir", str(target))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["chain"] == [older]
    assert (
        f"warning: skipped the newer backup {incremental} (backup {incremental} needs {full}, "
        f"which is gone): not restorable; restored {older} instead"
    ) in result.stderr, result.stderr
    assert tenants_of(target) == ["after-chain", "before-chain"]

    # No restorable backup at all: status fails.
    remove_backup(live.backups, older)
    check = _last_backup_check(live)
    assert check["verdict"] == "FAIL", check
    assert check["detail"] == (
        f"no restorable backup: the newest, {incremental}, is not (backup {incremental} needs "
        f"{full}, which is gone); run `hartonomous backup full`"
    ), check


def test_a_restore_that_did_not_finish_is_refused_naming_it(work: Path) -> None:
    # What a killed restore leaves: its marker, a half-combined cluster (with the source's
    # socket lock, which names the live server's pid).
    half = work / "half-restored"
    (half / "pgdata").mkdir(parents=True)
    (half / "pgdata" / ".s.PGSQL.5432.lock").write_text(f"{os.getpid()}\n")
    (half / "restore.incomplete").write_text("4242\n")
    cli = cli_for(half, work)
    for command in (("status",), ("db", "upgrade")):
        result = cli(*command)
        assert result.exit_code != 0, result.stdout
        assert (
            f"data dir {half} is a restore that did not finish (restore pid 4242, "
            "restore.incomplete present): it is not usable; remove it and run `hartonomous "
            "restore` again"
        ) in result.stderr, result.stderr
