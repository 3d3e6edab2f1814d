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


def test_an_archive_older_than_the_server_says_nothing_was_archived_since_it_started() -> None:
    # Just after a restart the newest segment is the previous run's: not the archiver's age.
    restarted = ArchiveAge(324.0, "on", 60, 0, None, server_uptime_seconds=20.0)
    assert archive_age_verdict(restarted) == (
        "OK",
        "no segment archived since the server started 20 s ago, the newest is 324 s old "
        "(archive_timeout 60 s)",
    )
    running = ArchiveAge(12.0, "on", 60, 0, None, server_uptime_seconds=600.0)
    assert archive_age_verdict(running)[1] == (
        "newest segment archived 12 s ago (archive_timeout 60 s)"
    )
    fresh = ArchiveAge(None, "on", 60, 0, None, server_uptime_seconds=5.0)
    assert archive_age_verdict(fresh)[1] == (
        "no segment archived yet since the server started 5 s ago (archive_timeout 60 s)"
    )
    # A segment waiting still judges it, whatever the archive's age.
    stuck = ArchiveAge(324.0, "on", 60, 1, 400.0, server_uptime_seconds=500.0)
    assert archive_age_verdict(stuck)[0] == "FAIL"


def test_an_embedded_server_not_archiving_although_asked_fails_and_says_restart_up() -> None:
    unapplied = ArchiveAge(None, "off", 0, None, None, server_uptime_seconds=30.0, embedded=True)
    verdict, detail = archive_age_verdict(unapplied)
    assert verdict == "FAIL"
    assert "archive_mode is off" in detail
    assert "restart `up` to apply archive_wal" in detail
    # A configured server archives through `pg_receivewal` (a service): its mode is its own.
    configured = ArchiveAge(None, "off", 0, None, None, server_uptime_seconds=30.0)
    assert archive_age_verdict(configured)[0] == "OK"
