"""`status`'s `last backup` line: its age against `[health] backup_warn_hours` / `_fail_hours`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hartonomous.config import Settings
from hartonomous.config.sections import HealthSettings
from hartonomous.services.status import backup_age_check

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
