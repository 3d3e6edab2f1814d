"""`status`'s `last backup` line: its age against `[health] backup_warn_hours` / `_fail_hours`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hartonomous.backup.catalog import BackupInfo
from hartonomous.config import Settings
from hartonomous.config.sections import HealthSettings
from hartonomous.services.backup_catalogue import BackupState
from hartonomous.services.status import backup_age_check, backup_check

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hours", "verdict"),
    [(1, "OK"), (25.9, "OK"), (26, "WARN"), (71.9, "WARN"), (72, "FAIL"), (500, "FAIL")],
)
def test_the_default_thresholds_warn_after_a_missed_day_and_fail_after_three(
    hours: float, verdict: str
) -> None:
    check = backup_age_check(Settings(), NOW - timedelta(hours=hours), NOW)
    assert check.name == "last backup"
    assert check.verdict == verdict
    assert f"({hours:.1f} h ago)" in check.detail


def test_the_thresholds_are_settings() -> None:
    settings = Settings(health=HealthSettings(backup_warn_hours=1, backup_fail_hours=2))
    check = backup_age_check(settings, NOW - timedelta(hours=1.5), NOW)
    assert check.verdict == "WARN"
    assert "WARN at 1.0 h" in check.detail


def test_fail_before_warn_is_refused_naming_both() -> None:
    with pytest.raises(ValidationError, match=r"backup_fail_hours .* must be at least"):
        HealthSettings(backup_warn_hours=48, backup_fail_hours=24)


def _backup(backup_id: str, finished: datetime, parent: str | None = None) -> BackupInfo:
    return BackupInfo(
        backup_id=backup_id,
        kind="full" if parent is None else "incremental",
        parent=parent,
        full=parent or backup_id,
        started_at=finished,
        finished_at=finished,
        start_lsn="0/2000028",
        end_lsn="0/2000100",
        timeline=1,
        system_identifier="1",
        server_version="18.1",
        size_bytes=1,
    )


def test_the_age_is_the_newest_restorable_backups_and_a_broken_newest_warns() -> None:
    old = _backup("old-full", NOW - timedelta(hours=2))
    orphan = _backup("new-incremental", NOW - timedelta(hours=1), parent="gone-full")
    state = BackupState(orphan, old, "backup new-incremental needs gone-full, which is gone")
    check = backup_check(Settings(), state, NOW)
    assert check.verdict == "WARN"
    assert check.detail.startswith(
        "newest backup new-incremental is not restorable (backup new-incremental needs "
        "gone-full, which is gone); newest restorable old-full finished "
    )
    assert "(2.0 h ago)" in check.detail
    stale = BackupState(orphan, _backup("old-full", NOW - timedelta(hours=100)), "why")
    assert backup_check(Settings(), stale, NOW).verdict == "FAIL"
    none = backup_check(Settings(), BackupState(orphan, None, "why"), NOW)
    assert (none.verdict, none.detail) == (
        "FAIL",
        "no restorable backup: the newest, new-incremental, is not (why); run "
        "`hartonomous backup full`",
    )
    assert backup_check(Settings(), BackupState(old, old, None), NOW).verdict == "OK"
