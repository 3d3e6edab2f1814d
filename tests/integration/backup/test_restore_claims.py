"""Issue 16's fourth trial: a restore reads a backup directory nothing removes from under it,
fails rather than stopping short of the WAL it checked, and owns its target alone (real
PostgreSQL 18, real pg_basebackup / pg_combinebackup; the restore library called with its
test hook between the checks and recovery, the CLI run beside it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.backup.conftest import Live, refused, tenants_of

from hartonomous.backup.restore import RestoreFailedError, restore
from hartonomous.config.sections import CdcSettings
from hartonomous.db.embedded import RESTORE_MARKER


def _segments(live: Live) -> set[str]:
    return {p.name for p in (live.backups / "wal").iterdir() if len(p.name) == 24}


def _restore(live: Live, target: Path, hook: Callable[[], None]) -> None:
    restore(
        live.backups,
        "latest",
        target,
        None,
        cdc=CdcSettings(),
        catch_up=lambda connection: {},
        before_recovery=hook,
    )


# ~60 s under load: a live server, two full backups, a failed and a successful restore.
def test_retention_waits_for_a_restore_and_a_replay_short_of_the_checked_wal_fails(
    live: Live, work: Path
) -> None:
    older = live.ok("backup", "full")["backup"]["backup_id"]
    live.archived_segment()
    with_backup = _segments(live)
    live.tenant("after-backup")
    live.archived_segment()
    after_backup = _segments(live) - with_backup
    assert after_backup
    target = work / "short"

    def retention_then_cleanup() -> None:
        # Retention while the restore reads: skipped, nothing removed, said on stderr.
        taken = live.cli("--json", "backup", "full", "--keep", "1")
        assert taken.exit_code == 0, taken.stderr
        assert "warning: retention skipped: a restore or verification (pid " in taken.stderr
        assert f"pid {os.getpid()}) is reading {live.backups}" in taken.stderr
        assert older in [b["backup_id"] for b in live.ok("backup", "list")["backups"]]
        assert _segments(live) >= after_backup
        # What no lock stops (an operator's own pg_archivecleanup): the checked WAL goes.
        for name in after_backup:
            (live.backups / "wal" / name).unlink()

    with pytest.raises(RestoreFailedError) as failed:
        _restore(live, target, retention_then_cleanup)
    message = str(failed.value)
    assert "\n" not in message
    assert "short of the newest restorable point checked before it started" in message
    assert not target.exists()

    # Without a reader, retention runs.
    taken = live.ok("backup", "full", "--keep", "1")
    assert older in taken["retention"]["removed"]
    assert taken["retention"]["skipped"] is None


# ~40 s under load: a live server, one full backup, a restore with a second one refused.
def test_a_second_restore_into_the_same_target_is_refused_and_removes_nothing(
    live: Live, work: Path
) -> None:
    live.ok("backup", "full")
    live.tenant("restored")
    live.archived_segment()
    target = work / "shared-target"

    def second_restore() -> None:
        error = refused(live, "restore", "latest", "--data-dir", str(target))
        assert error == (
            f"hartonomous: error: restore target {target} is being restored into by another "
            f"restore (pid {os.getpid()}): restore into a new directory, or wait for that one "
            "to end"
        ), error
        assert (target / "pgdata" / "PG_VERSION").is_file()

    _restore(live, target, second_restore)
    assert not (target / RESTORE_MARKER).exists()
    assert tenants_of(target) == ["restored"]

    # A killed restore's marker: named, not mistaken for a running one.
    killed = work / "killed"
    killed.mkdir()
    (killed / RESTORE_MARKER).write_text("999999999\n")
    error = refused(live, "restore", "latest", "--data-dir", str(killed))
    assert "holds a restore that did not finish (pid 999999999, no longer running" in error

    # A file system error inside the restore is one line, and the target goes.
    broken = work / "broken"

    def disk_error() -> None:
        raise FileNotFoundError(2, "No such file or directory", str(broken / "pgdata" / "x"))

    with pytest.raises(RestoreFailedError) as failed:
        _restore(live, broken, disk_error)
    assert str(failed.value) == (
        f"restore failed: No such file or directory: {broken / 'pgdata' / 'x'}"
    )
    assert not broken.exists()
