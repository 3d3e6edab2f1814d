"""The backup directory is absolute whatever the settings say: the backup programs run from `/`
(backup/tools.py), so a relative `.hartonomous/backups` (the default data directory's) named
nothing they could write or read, and `backup full` failed on a default install."""

from __future__ import annotations

from pathlib import Path

import pytest

from hartonomous.config.settings import load_settings
from hartonomous.db.runtime import archive_directory, backup_directory


def test_the_default_data_directorys_backups_are_absolute_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(overrides={"data_dir": Path(".hartonomous")})
    assert backup_directory(settings) == tmp_path / ".hartonomous" / "backups"


def test_a_relative_configured_backup_directory_and_its_wal_are_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        overrides={"backup": {"directory": "elsewhere/backups", "archive_wal": True}}
    )
    assert backup_directory(settings) == tmp_path / "elsewhere" / "backups"
    assert archive_directory(settings) == tmp_path / "elsewhere" / "backups" / "wal"
