"""`hartonomous status`: one screen of the platform's state, each line OK / WARN / FAIL with why.

Built from the readiness report (``services.health``: database, migrations, heartbeats, change
capture, the sync pause), the broker's status (``messaging.status``: backlog, dead letters), the
sync worker's ledger state, the last backup (``services.backup_catalogue``) and disk use.
Thresholds are `[health]` and `[cdc]` settings (docs/operations.md, "status").

Every check is isolated: one whose query fails, waits on a lock past
``STATUS_LOCK_TIMEOUT_SECONDS`` or times out is that check's FAIL line naming the cause (``the
ledger check waited on a lock: ...``), and the rest of the screen is still printed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, TypeVar

import psycopg
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import DBAPIError

from hartonomous.config import Settings
from hartonomous.db.embedded import EmbeddedNotRunningError
from hartonomous.db.tables import billing_usage_ledger
from hartonomous.errors import HartonomousError
from hartonomous.services.backup_catalogue import BackupState, backup_state
from hartonomous.services.broker import BrokerStatus, broker_status
from hartonomous.services.database_errors import database_error_reason, database_errors
from hartonomous.services.health import NotReadyError, Readiness, readiness, waiting_while_paused
from hartonomous.services.platform import Platform, open_platform
from hartonomous.services.wal_archive_age import archive_age, archive_age_verdict

__all__ = [
    "STATUS_LOCK_TIMEOUT_SECONDS",
    "StatusCheck",
    "StatusReport",
    "Verdict",
    "backup_age_check",
    "backup_check",
    "flow_checks",
    "platform_status",
    "status_report",
    "worst",
]

Verdict = Literal["OK", "WARN", "FAIL"]
_RANK: dict[Verdict, int] = {"OK": 0, "WARN": 1, "FAIL": 2}
# What the sync worker's heartbeat says when it stopped on an unwritable ledger (sync/worker.py).
_LEDGER_STOPPED = "usage ledger cannot be written"
_BYTES_PER_MIB = 1024 * 1024
STATUS_LOCK_TIMEOUT_SECONDS: Final = 2.0
"""The longest any one check's statement waits on a lock (at most `[database]
lock_timeout_seconds`): a table held by another session costs its check this, not the screen."""
_CHECK_FAILURES = (HartonomousError, DBAPIError, psycopg.Error, OSError)
_T = TypeVar("_T")


@dataclass(frozen=True)
class StatusCheck:
    name: str
    verdict: Verdict
    detail: str


@dataclass(frozen=True)
class StatusReport:
    """``verdict``: the worst of ``checks``."""

    checks: list[StatusCheck]

    @property
    def verdict(self) -> Verdict:
        return worst(self.checks)


def worst(checks: list[StatusCheck]) -> Verdict:
    """The worst verdict of ``checks`` (FAIL over WARN over OK); OK for none."""
    return max((check.verdict for check in checks), key=_RANK.__getitem__, default="OK")


def flow_checks(platform: Platform, ready: Readiness, broker: BrokerStatus) -> list[StatusCheck]:
    """The checks of whether work flows (services, change capture, the sync pause, backlog,
    Kafka lag, dead letters): ``platform_status``'s, and the admin dashboard's verdict."""
    return [
        *_services(platform, ready),
        _capture(ready),
        _pause(ready),
        _backlog(platform, broker),
        *_kafka(platform, ready),
        _dead_letters(broker),
    ]


def status_report(settings: Settings) -> StatusReport:
    """``platform_status`` of the configured database, which it never creates nor starts when
    a running `up` owns it: a server that stopped under `up` is the ``database`` FAIL (``up pid
    N is running``), with disk use. Each statement waits on a lock at most
    ``STATUS_LOCK_TIMEOUT_SECONDS``. Raises ``NoClusterError`` for a data dir without a
    cluster, like every command but `up` and `db upgrade`."""
    database = settings.database
    hurried = database.model_copy(
        update={
            "lock_timeout_seconds": min(database.lock_timeout_seconds, STATUS_LOCK_TIMEOUT_SECONDS)
        }
    )
    try:
        with open_platform(
            settings.model_copy(update={"database": hurried}),
            require_current_schema=False,
            read_only=True,
        ) as platform:
            return platform_status(platform)
    except EmbeddedNotRunningError as exc:
        return StatusReport([StatusCheck("database", "FAIL", str(exc)), _disk(settings, None)])


def check_failure(name: str, failure: BaseException) -> str:
    """Why the ``name`` check could not be made, in one line: ``the ledger check waited on a
    lock: ...``, ``... timed out: ...``, ``... failed: ...``."""
    cause = failure.__cause__ if isinstance(failure, HartonomousError) else failure
    sqlstate = getattr(getattr(cause, "orig", None) or cause, "sqlstate", None)
    if isinstance(cause, DBAPIError | psycopg.Error):
        reason = database_error_reason(cause).removeprefix("database error: ")
    else:
        reason = str(failure)
    if sqlstate == "55P03":
        return f"the {name} check waited on a lock: {reason}"
    if sqlstate == "57014":
        return f"the {name} check timed out: {reason}"
    return f"the {name} check failed: {reason}"


def _isolated(name: str, check: Callable[[], _T]) -> _T | StatusCheck:
    """``check()``, or the ``name`` FAIL line when it raises (a database or file system
    failure: ``check_failure``'s line)."""
    try:
        return check()
    except _CHECK_FAILURES as failure:
        return StatusCheck(name, "FAIL", check_failure(name, failure))


def platform_status(platform: Platform) -> StatusReport:
    """Every check, each isolated (``check_failure``); a database that cannot be reached is
    one FAIL and the rest that needs it is skipped (disk use is still measured)."""
    try:
        ready = readiness(platform)
    except NotReadyError as exc:
        return StatusReport(
            [StatusCheck("database", "FAIL", str(exc)), _disk(platform.settings, None)]
        )
    broker = _isolated("backlog", lambda: _broker(platform))
    if isinstance(broker, StatusCheck):
        flow = [
            *_services(platform, ready),
            _capture(ready),
            _pause(ready),
            broker,
            *_kafka(platform, ready),
            # Counted by the same query as the backlog: its failure is this line's too.
            StatusCheck("dead letters", "FAIL", broker.detail),
        ]
    else:
        flow = flow_checks(platform, ready, broker)
    ledger = _isolated("ledger", lambda: _ledger(ready, _ledger_rows(platform)))
    backup = _isolated("last backup", lambda: _backup(platform))
    archiver = _isolated("wal archiving", lambda: _archiver(platform))
    archiving = archiver if isinstance(archiver, StatusCheck) else wal_archiving_check(archiver)
    archive_age = _isolated("WAL archive age", lambda: _archive_age(platform))
    size = _isolated("disk", lambda: _database_bytes(platform))
    checks = [
        StatusCheck("database", "OK", f"migrations at head ({ready.revision})"),
        *flow,
        ledger,
        backup,
        *([archiving] if archiving is not None else []),
        *([archive_age] if isinstance(archive_age, StatusCheck) else archive_age),
        _disk(platform.settings, None if isinstance(size, StatusCheck) else size),
    ]
    return StatusReport(checks)


def _broker(platform: Platform) -> BrokerStatus:
    with database_errors():
        return broker_status(platform)


def _services(platform: Platform, ready: Readiness) -> list[StatusCheck]:
    stale = platform.settings.health.heartbeat_stale_seconds
    checks = []
    for name in platform.settings.health.expected_services:
        instances = [s for s in ready.services if s.service == name]
        working = [s for s in instances if s.working]
        paused = [s for s in instances if s.fresh and s.state == "paused"]
        # A fresh instance failing beside working ones still holds work (on Kafka its
        # partitions): WARN naming it.
        failing = [s for s in instances if s.fresh and s.state in ("failing", "failed")]
        if working and failing:
            bad = failing[0]
            checks.append(
                StatusCheck(
                    f"service {name}",
                    "WARN",
                    f"{bad.state} on {bad.instance}: {bad.detail or 'no detail'} "
                    f"({len(working)} other instance(s) working)",
                )
            )
        elif working:
            beat = working[0]
            checks.append(
                StatusCheck(
                    f"service {name}",
                    "OK",
                    f"{beat.state} on {beat.instance}, beat {beat.age_seconds}s ago",
                )
            )
        elif paused:
            checks.append(StatusCheck(f"service {name}", "WARN", f"paused on {paused[0].instance}"))
        elif not instances:
            checks.append(
                StatusCheck(
                    f"service {name}", "FAIL", "no heartbeat (is `hartonomous up` running?)"
                )
            )
        else:
            latest = instances[0]
            why = (
                f"last heartbeat {latest.age_seconds}s ago, stale past {stale}s"
                if not latest.fresh
                else (latest.detail or "no detail")
            )
            checks.append(
                StatusCheck(
                    f"service {name}", "FAIL", f"{latest.state} on {latest.instance}: {why}"
                )
            )
    return checks


def _capture(ready: Readiness) -> StatusCheck:
    lag = ready.change_capture
    if not lag.slot_exists:
        return StatusCheck("change capture", "FAIL", "replication slot missing (`db upgrade`)")
    # None: the CES consumer has not caught up since the slot was made (a restored directory
    # before its first `up`, say).
    since = "never caught up" if lag.lag_seconds is None else f"{lag.lag_seconds}s since caught up"
    detail = f"slot lag {lag.lag_bytes} bytes, {since}"
    return StatusCheck("change capture", "WARN" if lag.lagging else "OK", detail)


def _pause(ready: Readiness) -> StatusCheck:
    sync = ready.sync
    if not sync.paused:
        return StatusCheck("sync pause", "OK", "not paused")
    by = f" by {sync.paused_by}" if sync.paused_by else ""
    why = f" ({sync.reason})" if sync.reason else ""
    return StatusCheck(
        "sync pause",
        "WARN",
        f"paused{by} since {sync.paused_at}{why}; "
        f"{waiting_while_paused(sync.backlog, sync.uncaptured_bytes)} wait "
        "(`hartonomous sync resume`)",
    )


def _backlog(platform: Platform, broker: BrokerStatus) -> StatusCheck:
    limit = platform.settings.health.backlog_alert_seconds
    detail = (
        f"{broker.depth} queued, oldest {broker.oldest_age_seconds}s, {broker.in_flight} in "
        f"flight, {broker.orphaned_claims} orphaned claim(s)"
    )
    if broker.oldest_age_seconds > limit:
        return StatusCheck("backlog", "WARN", f"{detail}; oldest past {limit}s")
    return StatusCheck("backlog", "OK", detail)


def _kafka(platform: Platform, ready: Readiness) -> list[StatusCheck]:
    """The Kafka consumer group's lag (only with `transport = "kafka"`)."""
    kafka = ready.kafka
    if kafka is None:
        return []
    if not kafka.reachable:
        return [StatusCheck("kafka lag", "FAIL", kafka.error or "unreachable")]
    limit = platform.settings.health.backlog_alert_seconds
    lagging = kafka.lagging()
    detail = (
        f"group {kafka.group} on {kafka.topic}: {kafka.lag} record(s) not committed"
        + ("" if kafka.oldest_age_seconds is None else f", oldest {kafka.oldest_age_seconds}s")
        + (f" ({lagging})" if lagging else "")
    )
    if kafka.oldest_age_seconds is not None and kafka.oldest_age_seconds > limit:
        return [StatusCheck("kafka lag", "WARN", f"{detail}; oldest past {limit}s")]
    return [StatusCheck("kafka lag", "OK", detail)]


def _dead_letters(broker: BrokerStatus) -> StatusCheck:
    detail = (
        f"{broker.dead_letters} awaiting replay, {broker.dead_letters_last_hour} in the last hour"
    )
    if broker.dead_letter_spike:
        return StatusCheck("dead letters", "FAIL", f"{detail}: a spike (`deadletters list`)")
    if broker.dead_letters:
        return StatusCheck("dead letters", "WARN", f"{detail} (`deadletters list`)")
    return StatusCheck("dead letters", "OK", detail)


def _ledger(ready: Readiness, rows: int) -> StatusCheck:
    stopped = [
        s
        for s in ready.services
        if s.service == "sync-worker"
        and s.state == "failed"
        and _LEDGER_STOPPED in (s.detail or "")
    ]
    newest = max(
        (s.last_beat_at for s in ready.services if s.service == "sync-worker"), default=None
    )
    if stopped and stopped[0].last_beat_at == newest:
        return StatusCheck("ledger", "FAIL", f"{stopped[0].detail}")
    return StatusCheck("ledger", "OK", f"{rows} row(s), no write failure")


def _backup(platform: Platform) -> StatusCheck:
    return backup_check(platform.settings, backup_state(platform), datetime.now(UTC))


def backup_check(settings: Settings, state: BackupState, now: datetime) -> StatusCheck:
    """The `last backup` line: the age of the newest RESTORABLE backup (``backup_age_check``);
    WARN at least when the newest backup is not restorable (naming it and why), FAIL when no
    backup is; WARN "no backups" for none."""
    if state.newest is None:
        return StatusCheck("last backup", "WARN", "no backups")
    if state.restorable is None:
        return StatusCheck(
            "last backup",
            "FAIL",
            f"no restorable backup: the newest, {state.newest.backup_id}, is not ({state.problem})"
            "; run `hartonomous backup full`",
        )
    check = backup_age_check(settings, state.restorable.finished_at, now)
    if state.restorable.backup_id == state.newest.backup_id:
        return check
    return StatusCheck(
        "last backup",
        worst([check, StatusCheck("last backup", "WARN", "")]),
        f"newest backup {state.newest.backup_id} is not restorable ({state.problem}); newest "
        f"restorable {state.restorable.backup_id} finished {check.detail}; run "
        "`hartonomous backup full`",
    )


def _archive_age(platform: Platform) -> list[StatusCheck]:
    """ "WAL archive age" (``services.wal_archive_age``), while `[backup] archive_wal` is on."""
    with database_errors():
        age = archive_age(platform)
    if age is None:
        return []
    verdict, detail = archive_age_verdict(age)
    return [StatusCheck("WAL archive age", verdict, detail)]


def backup_age_check(settings: Settings, at: datetime, now: datetime) -> StatusCheck:
    """The `last backup` line for a newest backup finished ``at``: OK younger than
    `[health] backup_warn_hours`, WARN younger than `backup_fail_hours`, FAIL after."""
    health = settings.health
    hours = (now - at).total_seconds() / 3600
    detail = f"{at.isoformat()} ({hours:.1f} h ago)"
    if hours >= health.backup_fail_hours:
        return StatusCheck("last backup", "FAIL", f"{detail}; FAIL at {health.backup_fail_hours} h")
    if hours >= health.backup_warn_hours:
        return StatusCheck("last backup", "WARN", f"{detail}; WARN at {health.backup_warn_hours} h")
    return StatusCheck("last backup", "OK", detail)


def _disk(settings: Settings, database_bytes: int | None) -> StatusCheck:
    health = settings.health
    data_dir = settings.data_dir
    size = "" if database_bytes is None else f"database {database_bytes / _BYTES_PER_MIB:.1f} MiB; "
    try:
        usage = shutil.disk_usage(data_dir if data_dir.exists() else data_dir.parent)
    except OSError as exc:
        return StatusCheck("disk", "WARN", f"{size}cannot measure {data_dir}: {exc.strerror}")
    used = 100 * usage.used / usage.total if usage.total else 0.0
    detail = (
        f"{size}file system of {data_dir} {used:.1f}% used, "
        f"{usage.free / _BYTES_PER_MIB / 1024:.1f} GiB free"
    )
    if used >= health.disk_fail_percent:
        return StatusCheck("disk", "FAIL", f"{detail} (FAIL at {health.disk_fail_percent}%)")
    if used >= health.disk_warn_percent:
        return StatusCheck("disk", "WARN", f"{detail} (WARN at {health.disk_warn_percent}%)")
    return StatusCheck("disk", "OK", detail)


ArchiverRow = tuple[str, str | None, datetime | None, int, str | None, datetime | None]
"""archive_mode, then pg_stat_archiver's last_archived_wal, last_archived_time, failed_count,
last_failed_wal and last_failed_time."""

_ARCHIVER = text(
    "SELECT current_setting('archive_mode'), last_archived_wal, last_archived_time, "
    "failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver"
)


def wal_archiving_check(row: ArchiverRow) -> StatusCheck | None:
    """The server's own WAL archiving (`archive_mode`): FAIL while its last attempt failed (a
    full or read-only archive: every later segment waits, and a restore would stop at the
    last one archived); None when archiving is off (a configured server's `pg_receivewal`
    is a service with its heartbeat)."""
    mode, archived_wal, archived_at, failed, failed_wal, failed_at = row
    if mode == "off":
        return None
    if failed_at is not None and (archived_at is None or failed_at > archived_at):
        return StatusCheck(
            "wal archiving",
            "FAIL",
            f"archiving {failed_wal} failed at {failed_at.isoformat()} ({failed} failure(s) "
            f"since the server started); last archived: {archived_wal or 'none'}",
        )
    if archived_at is None:
        return StatusCheck("wal archiving", "OK", "on; no segment archived yet")
    return StatusCheck(
        "wal archiving", "OK", f"last archived {archived_wal} at {archived_at.isoformat()}"
    )


def _hurried(connection: Connection) -> None:
    """This transaction's statements wait on a lock at most ``STATUS_LOCK_TIMEOUT_SECONDS``
    (also for a platform opened with a longer `lock_timeout`, the admin dashboard's)."""
    milliseconds = round(STATUS_LOCK_TIMEOUT_SECONDS * 1000)
    connection.execute(
        text("SELECT set_config('lock_timeout', :value, true)"), {"value": f"{milliseconds}ms"}
    )


def _ledger_rows(platform: Platform) -> int:
    with platform.maintenance_engine.connect() as connection:
        _hurried(connection)
        rows = connection.execute(select(func.count()).select_from(billing_usage_ledger)).scalar()
    return int(rows or 0)


def _database_bytes(platform: Platform) -> int:
    with platform.maintenance_engine.connect() as connection:
        _hurried(connection)
        size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar()
    return int(size or 0)


def _archiver(platform: Platform) -> ArchiverRow:
    with platform.maintenance_engine.connect() as connection:
        _hurried(connection)
        archiver = connection.execute(_ARCHIVER).one()
    mode, archived_wal, archived_at, failed, failed_wal, failed_at = archiver
    return (str(mode), archived_wal, archived_at, int(failed or 0), failed_wal, failed_at)
