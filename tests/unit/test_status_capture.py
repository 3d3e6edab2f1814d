"""`status`'s change-capture line when the CES consumer has never caught up (a restored data
directory before its first `up`: it printed "Nones since caught up"), and its WAL archiving
line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from hartonomous.services.health import CaptureLag
from hartonomous.services.status import _capture, wal_archiving_check


def _ready(lag_seconds: float | None) -> Any:
    lag = CaptureLag(slot_exists=True, lag_bytes=16730952, lag_seconds=lag_seconds, lagging=False)
    return cast(Any, SimpleNamespace(change_capture=lag))


def test_a_consumer_that_never_caught_up_is_said_so() -> None:
    check = _capture(_ready(None))
    assert check.detail == "slot lag 16730952 bytes, never caught up"
    assert "None" not in check.detail


def test_a_consumer_that_caught_up_gives_its_age() -> None:
    assert _capture(_ready(2.5)).detail == "slot lag 16730952 bytes, 2.5s since caught up"


ARCHIVED_AT = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def test_wal_archiving_that_last_failed_is_a_fail_naming_the_segment() -> None:
    """The trial's read-only archive: pg_stat_archiver counted failures and `status` said OK."""
    later = ARCHIVED_AT + timedelta(minutes=5)
    check = wal_archiving_check(("on", "0009", ARCHIVED_AT, 3, "000A", later))
    assert check is not None
    assert (check.verdict, check.detail.split(" failed")[0]) == ("FAIL", "archiving 000A")
    assert "3 failure(s)" in check.detail
    assert "last archived: 0009" in check.detail


def test_wal_archiving_that_recovered_or_never_failed_is_ok_and_off_is_not_listed() -> None:
    recovered = wal_archiving_check(
        ("on", "000B", ARCHIVED_AT, 3, "000A", ARCHIVED_AT - timedelta(minutes=1))
    )
    assert recovered is not None
    assert recovered.verdict == "OK"
    fresh = wal_archiving_check(("on", None, None, 0, None, None))
    assert fresh is not None
    assert (fresh.verdict, fresh.detail) == (
        "OK",
        "on; no segment archived yet",
    )
    never = wal_archiving_check(("always", None, None, 1, "0001", ARCHIVED_AT))
    assert never is not None
    assert never.verdict == "FAIL"
    assert wal_archiving_check(("off", None, None, 0, None, None)) is None
