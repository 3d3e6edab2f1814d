"""`status`'s "WAL archive age" verdict from the archive's and the archiver's figures."""

from __future__ import annotations

from hartonomous.services.wal_archive_age import ArchiveAge, archive_age_verdict


def age(
    *, newest: float | None = 12.0, timeout: int = 60, waiting: int = 0, waited: float | None = None
) -> ArchiveAge:
    return ArchiveAge(newest, "on", timeout, waiting, waited)


def test_an_idle_archive_is_ok_however_old_its_newest_segment() -> None:
    verdict, detail = archive_age_verdict(age(newest=86_400.0))
    assert verdict == "OK"
    assert detail == "newest segment archived 86400 s ago (archive_timeout 60 s)"


def test_a_completed_segment_waiting_past_the_timeout_warns_then_fails() -> None:
    assert archive_age_verdict(age(waiting=1, waited=59.0))[0] == "OK"
    verdict, detail = archive_age_verdict(age(waiting=2, waited=61.0))
    assert verdict == "WARN"
    assert "2 completed segment(s) not archived, the oldest waiting 61 s (WARN past 60 s)" in (
        detail
    )
    verdict, detail = archive_age_verdict(age(waiting=2, waited=301.0))
    assert verdict == "FAIL"
    assert detail.endswith("(FAIL past 300 s)")


def test_archive_timeout_off_warns_and_its_thresholds_fall_back_to_a_minute() -> None:
    verdict, detail = archive_age_verdict(age(timeout=0))
    assert verdict == "WARN"
    assert detail.endswith("the last changes wait until their segment fills")
    assert archive_age_verdict(age(timeout=0, waiting=1, waited=301.0))[0] == "FAIL"


def test_nothing_archived_yet_is_said() -> None:
    assert archive_age_verdict(age(newest=None)) == (
        "OK",
        "no segment archived yet (archive_timeout 60 s)",
    )
