"""How fresh the WAL archive is, for `status` ("WAL archive age") and `/metrics`
(`hartonomous_wal_archive_last_archived_age_seconds`); docs/operations.md, "status".

A restore reaches only what is archived. On a quiet system that takes `archive_timeout` (the
server switches a segment holding changes at most that long after it began); a segment
completed and still not archived after that long means the archiver is stuck (a failing
`archive_command`, a full or read-only archive). An idle system archives nothing, and
rightly so: the newest segment's age alone is shown, not judged. A newest segment older than
the server's uptime was archived before the server (re)started: the check says that nothing was
archived since the start, rather than an age that reads as the archiver's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import text

from hartonomous.backup.wal_archive import newest_archived_age_seconds
from hartonomous.db.runtime import backup_directory
from hartonomous.services.platform import Platform

__all__ = ["ArchiveAge", "archive_age", "archive_age_verdict"]

# A completed segment waiting longer than this many timeouts fails the check.
FAIL_AFTER_TIMEOUTS = 5
# The unit of the thresholds when `archive_timeout` is off (0).
_DEFAULT_TIMEOUT_SECONDS = 60

# The server's archiving settings (archive_timeout in seconds; 0: off).
_SETTINGS = text(
    "SELECT current_setting('archive_mode'), "
    "(SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout'), "
    "has_function_privilege('pg_ls_archive_statusdir()', 'EXECUTE'), "
    "extract(epoch FROM now() - pg_postmaster_start_time())::float8"
)
# Segments the server completed and has not archived yet: their `.ready` files, and how long
# the oldest has waited. Run only with the privilege (superuser or pg_monitor).
_WAITING = text(
    "SELECT count(*), extract(epoch FROM now() - min(modification))::float8 "
    "FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
)


@dataclass(frozen=True)
class ArchiveAge:
    """``last_archived_age_seconds``: since the newest segment reached `<backup directory>/wal`
    (None: none there); ``timeout_seconds``: the server's `archive_timeout` (0: off);
    ``waiting`` / ``oldest_waiting_seconds``: completed segments not yet archived and the
    oldest one's wait (None: archive_mode off, or not readable by this role);
    ``server_uptime_seconds``: since the server started (None: not known); ``embedded``:
    the server is the embedded one, which archives by itself (`archive_mode`) when `up`
    started it with `[backup] archive_wal` on."""

    last_archived_age_seconds: float | None
    archive_mode: str
    timeout_seconds: int
    waiting: int | None
    oldest_waiting_seconds: float | None
    server_uptime_seconds: float | None = None
    embedded: bool = False


def archive_age(platform: Platform) -> ArchiveAge | None:
    """The archive's age and the server's backlog of segments; None when `[backup]
    archive_wal` is off (nothing is archived by the platform)."""
    settings = platform.settings
    if not settings.backup.archive_wal:
        return None
    age = newest_archived_age_seconds(backup_directory(settings), datetime.now(UTC))
    with platform.maintenance_engine.connect() as connection:
        mode, timeout, may_list, uptime = connection.execute(_SETTINGS).one()
        waiting: int | None = None
        waited: float | None = None
        if mode != "off" and may_list:
            count, oldest = connection.execute(_WAITING).one()
            waiting, waited = int(count), None if oldest is None else float(oldest)
    return ArchiveAge(
        age,
        str(mode),
        int(timeout or 0),
        waiting,
        waited,
        None if uptime is None else float(uptime),
        # A server this very command started read-only does not archive, by design.
        platform.database is not None
        and platform.database.embedded
        and not platform.database.archiving_skipped,
    )


def archive_age_verdict(age: ArchiveAge) -> tuple[Literal["OK", "WARN", "FAIL"], str]:
    """OK / WARN / FAIL and why. With T the server's `archive_timeout` (60 s when off): WARN
    when a completed segment has waited past T, FAIL past 5 T; WARN when `archive_mode` is on
    with `archive_timeout` off (the last changes wait until their segment fills); FAIL when
    the embedded server runs with `archive_mode` off although `[backup] archive_wal` asks for
    archiving (it was started before the setting: `up` must be restarted)."""
    if age.embedded and age.archive_mode == "off":
        return "FAIL", (
            "[backup] archive_wal is on but the running server's archive_mode is off, so "
            "nothing is archived: restart `up` to apply archive_wal"
        )
    limit = age.timeout_seconds or _DEFAULT_TIMEOUT_SECONDS
    newest = _newest(age)
    timeout = f"archive_timeout {age.timeout_seconds} s" if age.archive_mode != "off" else ""
    detail = f"{newest}" + (f" ({timeout})" if timeout else "")
    if age.waiting and age.oldest_waiting_seconds is not None:
        stalled = (
            f"{detail}; {age.waiting} completed segment(s) not archived, the oldest waiting "
            f"{age.oldest_waiting_seconds:.0f} s"
        )
        if age.oldest_waiting_seconds > FAIL_AFTER_TIMEOUTS * limit:
            return "FAIL", f"{stalled} (FAIL past {FAIL_AFTER_TIMEOUTS * limit} s)"
        if age.oldest_waiting_seconds > limit:
            return "WARN", f"{stalled} (WARN past {limit} s)"
    if age.archive_mode != "off" and age.timeout_seconds == 0:
        return "WARN", f"{detail}: the last changes wait until their segment fills"
    return "OK", detail


def _newest(age: ArchiveAge) -> str:
    """The newest archived segment's age, or that none was archived since the server started."""
    archived, uptime = age.last_archived_age_seconds, age.server_uptime_seconds
    started = "" if uptime is None else f"since the server started {uptime:.0f} s ago"
    if archived is None:
        return f"no segment archived yet{' ' + started if started else ''}"
    if uptime is not None and archived > uptime:
        return f"no segment archived {started}, the newest is {archived:.0f} s old"
    return f"newest segment archived {archived:.0f} s ago"
