"""`restore`: a backup chain combined into a new data directory, WAL replayed to a point in
time, the server promoted and change capture re-armed (docs/operations.md, "Restore").

Nothing is written outside the new data directory: the backup directory is only read (under
its reading lock, so retention removes nothing meanwhile), the live server is not contacted.
Any failure removes what the restore created, and only that.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from hartonomous.backup.catalog import (
    BackupInfo,
    BackupNotFoundError,
    backup_path,
    chain_of,
    list_backups,
    wal_dir,
)
from hartonomous.backup.lock import reading_lock
from hartonomous.backup.rearm import Rearmed, rearm
from hartonomous.backup.recovery import arm_recovery, reset_recovery_sql
from hartonomous.backup.tools import BackupToolError, run_program
from hartonomous.backup.verify import BackupVerificationError, verify_backup
from hartonomous.backup.wal_archive import ArchiveCheck, check_archive
from hartonomous.config.sections import CdcSettings
from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import (
    RESTORE_MARKER,
    EmbeddedDatabaseError,
    EmbeddedPostgres,
    give_to_server_user,
    make_server_dir,
)
from hartonomous.errors import ConflictError, OperationFailedError, UsageError
from hartonomous.messaging.pause import read_pause

Connection = psycopg.Connection[Any]
PROMOTION_TIMEOUT_SECONDS = 600
_TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"


class RestoreTargetInUseError(ConflictError):
    """The data directory to restore into exists and is not empty (or a server runs there)."""

    code = "restore-target-not-empty"


class RestoreWalGapError(ConflictError):
    """A restore to the latest state would stop at a gap or a damaged segment of the archived
    WAL; refused unless the operator accepts it (``accept_wal_gap``)."""

    code = "restore-wal-gap"


class RestoreTimeOutOfRangeError(UsageError):
    """The restore time is before the backup's end, in the future, or past the archived WAL."""

    code = "restore-time-out-of-range"


class RestoreFailedError(OperationFailedError):
    """The restored server did not come up; the new data directory was removed."""

    code = "restore-failed"


@dataclass(frozen=True)
class RestoreResult:
    data_dir: Path
    chain: list[str]
    to_time: datetime | None
    # The newest transaction the restored cluster holds (pg_last_committed_xact is off, so
    # the newest commit timestamp is not known: this is the promotion's time).
    promoted_at: datetime
    rearmed: Rearmed
    catch_up: dict[str, int]
    # The archived WAL the restore could read: with a problem, it stopped before it.
    archive: ArchiveCheck
    # `sync pause` is data: the restored cluster keeps the source's flag at the restore point.
    sync_paused: bool
    # ``latest`` only: newer backups passed over as not restorable (`B (why)`), newest first.
    skipped: list[str]


def choose_chain(
    directory: Path, backup_id: str, to_time: datetime | None
) -> tuple[list[BackupInfo], list[str]]:
    """The chain (full first) ending in ``backup_id``, every backup of it verified, and why
    newer backups were skipped. ``latest``: the newest RESTORABLE backup (finished by
    ``to_time`` when given): a newer one whose chain has a backup gone or failing
    pg_verifybackup is skipped, its reason returned (`B (why)`). Raises
    ``BackupNotFoundError``, ``RestoreTimeOutOfRangeError``, ``BackupVerificationError`` (a
    named backup's chain, or every candidate of ``latest`` when none verifies: the newest's).
    """
    backups = list_backups(directory)
    if not backups:
        raise BackupNotFoundError(f"no complete backup in {directory / 'base'}")
    if to_time is not None:
        if to_time.tzinfo is None:
            raise UsageError(f"--to-time {to_time.isoformat()} needs a UTC offset (e.g. +00:00)")
        if to_time > datetime.now(UTC):
            raise RestoreTimeOutOfRangeError(f"--to-time {to_time.isoformat()} is in the future")
    if backup_id != "latest":
        named = next((b for b in backups if b.backup_id == backup_id), None)
        if named is None:
            raise BackupNotFoundError(f"no complete backup {backup_id!r} in {directory / 'base'}")
        if to_time is not None and to_time < named.finished_at:
            raise RestoreTimeOutOfRangeError(
                f"--to-time {to_time.isoformat()} is before backup {named.backup_id} finished "
                f"({named.finished_at.isoformat()}); name an older backup or `latest`"
            )
        chain = chain_of(backups, named)
        for backup in chain:
            verify_backup(directory, backup)
        return chain, []
    eligible = [b for b in backups if to_time is None or b.finished_at <= to_time]
    if not eligible:
        assert to_time is not None
        raise RestoreTimeOutOfRangeError(
            f"--to-time {to_time.isoformat()} is before the end of the oldest backup "
            f"({backups[0].backup_id}, finished {backups[0].finished_at.isoformat()})"
        )
    skipped: list[str] = []
    first_error: Exception | None = None
    for last in reversed(eligible):
        try:
            chain = chain_of(backups, last)
            for backup in chain:
                verify_backup(directory, backup)
        except (BackupNotFoundError, BackupVerificationError) as exc:
            first_error = first_error or exc
            skipped.append(f"{last.backup_id} ({exc})")
            continue
        return chain, skipped
    assert first_error is not None
    raise first_error


def require_empty_target(data_dir: Path) -> None:
    """Refuse a data directory that exists and holds anything (a live or older cluster)."""
    if data_dir.is_symlink() or (data_dir.exists() and not data_dir.is_dir()):
        raise RestoreTargetInUseError(f"restore target {data_dir} exists and is not a directory")
    if (data_dir / RESTORE_MARKER).is_file():
        raise RestoreTargetInUseError(_marker_refusal(data_dir))
    if data_dir.is_dir() and any(data_dir.iterdir()):
        # An embedded data dir (its cluster in pgdata/) or a cluster directory itself.
        live = any((d / "postmaster.pid").exists() for d in (data_dir / "pgdata", data_dir))
        raise RestoreTargetInUseError(
            f"restore target {data_dir} is not empty"
            + (" (a server is running on it)" if live else "")
            + ": restore into a new directory"
        )


def require_reachable(check: ArchiveCheck, to_time: datetime) -> None:
    """Refuse ``to_time`` unless a commit after it is in the backup's continuous WAL:
    recovery stops before the first commit past its target, and fails without one."""
    newest = check.newest_commit_at
    if newest is not None and to_time < newest:
        return
    cause = check.describe_problem() or (
        f"the archived WAL ends with segment {check.continuous_to}"
        if check.continuous_to
        else "no WAL is archived after the backup"
    )
    reached = (
        f"the last commit in it is at {newest.isoformat()} (LSN {check.newest_commit_lsn})"
        if newest is not None
        else "it holds no commit after the backup"
    )
    raise RestoreTimeOutOfRangeError(
        f"--to-time {to_time.isoformat()} is past the newest restorable point of backup "
        f"{check.backup_id}: {reached}, and {cause}"
    )


def require_continuous(check: ArchiveCheck, accept_wal_gap: bool) -> None:
    """Refuse a restore to the latest state that would stop short of the archived WAL's end
    (a gap or a damaged segment), naming the newest restorable time, unless accepted."""
    problem = check.describe_problem()
    if problem is None or accept_wal_gap:
        return
    newest = (
        f"the commit at {check.newest_commit_at.isoformat()} (LSN {check.newest_commit_lsn})"
        if check.newest_commit_at is not None
        else "the end of the backup (no commit archived after it)"
    )
    raise RestoreWalGapError(
        f"archived WAL after backup {check.backup_id} is not continuous ({problem}): a restore "
        f"to the latest state would stop at {check.continuous_to or 'the backup end'}, newest "
        f"restorable time {newest}; restore with --to-time earlier than that, or add "
        "--accept-wal-gap to restore what is continuous"
    )


def require_restorable(check: ArchiveCheck, to_time: datetime | None, accept_wal_gap: bool) -> None:
    """``to_time`` reachable in the archived WAL, or without it the WAL continuous (or that
    accepted): ``require_reachable``, ``require_continuous``."""
    if to_time is None:
        require_continuous(check, accept_wal_gap)
    else:
        require_reachable(check, to_time)


def _continuous_wal(data_dir: Path, archive: Path, check: ArchiveCheck) -> Path:
    """The folder recovery reads WAL from: the archive itself, or, when a gap or a damaged
    segment cuts it, a folder of links to the continuous part only (recovery would otherwise
    go on past a gap into later segments, or stop the server on a truncated one)."""
    if check.ok:
        return archive
    view = data_dir / "restore-wal"
    make_server_dir(view)
    for segment in [*check.segments, *archive.glob("*.history")]:
        (view / segment.name).symlink_to(segment)
    return view


def restore(
    directory: Path,
    backup_id: str,
    data_dir: Path,
    to_time: datetime | None,
    *,
    cdc: CdcSettings,
    catch_up: Callable[[Connection], dict[str, int]],
    accept_wal_gap: bool = False,
    before_recovery: Callable[[], None] | None = None,
) -> RestoreResult:
    """Restore into ``data_dir`` (an embedded data directory: its cluster is ``pgdata``).

    ``catch_up`` runs on the promoted, re-armed cluster and returns what it re-emitted.
    The archived WAL is checked first (``wal_archive.check_archive``): a ``to_time`` past the
    newest restorable point is refused before anything is created; without ``to_time`` a gap or
    damaged segment is refused too (``RestoreWalGapError``) unless ``accept_wal_gap``: then the
    restore ends at the end of the continuous WAL, which ``RestoreResult.archive`` describes.
    The backup directory's reading lock is held throughout (``lock.reading_lock``: retention
    removes nothing meanwhile), and ``data_dir`` is claimed exclusively (``RESTORE_MARKER``
    made with O_EXCL): a second restore into it is refused naming the first one's pid.
    After promotion the replayed WAL must reach the newest restorable point the check found;
    short of it (archived WAL gone or damaged during the restore) the restore fails.
    ``before_recovery`` (tests) runs after the checks and the combine, before the server starts.
    Raises ``RestoreTargetInUseError``, ``RestoreTimeOutOfRangeError``, ``RestoreWalGapError``,
    ``BackupNotFoundError``, ``BackupVerificationError`` (a tampered or incomplete backup),
    ``BackupDirectoryInUseError`` (retention is running), ``RestoreFailedError`` (also for any
    file system error, in one line); after any of them ``data_dir`` is as it was before.
    """
    try:
        require_empty_target(data_dir)
        with reading_lock(directory):
            chain, skipped = choose_chain(directory, backup_id, to_time)
            archive = check_archive(directory, chain[-1])
            require_restorable(archive, to_time, accept_wal_gap)
            created = _claim_target(data_dir)
            try:
                done = _restore_claimed(
                    directory, chain, data_dir, to_time, archive, cdc, catch_up, before_recovery
                )
            except BaseException:
                _remove_claimed(data_dir, created)
                raise
    except OSError as exc:
        raise RestoreFailedError(f"restore failed: {_os_reason(exc)}") from None
    promoted_at, rearmed, caught_up, sync_paused = done
    return RestoreResult(
        data_dir=data_dir,
        chain=[b.backup_id for b in chain],
        to_time=to_time,
        promoted_at=promoted_at,
        rearmed=rearmed,
        catch_up=caught_up,
        archive=archive,
        sync_paused=sync_paused,
        skipped=skipped,
    )


def _os_reason(exc: OSError) -> str:
    """`<reason>: <path>` of a file system error (one line)."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def _restore_claimed(  # noqa: PLR0917 - the steps of one restore
    directory: Path,
    chain: list[BackupInfo],
    data_dir: Path,
    to_time: datetime | None,
    archive: ArchiveCheck,
    cdc: CdcSettings,
    catch_up: Callable[[Connection], dict[str, int]],
    before_recovery: Callable[[], None] | None,
) -> tuple[datetime, Rearmed, dict[str, int], bool]:
    """Combine, recover, check the replay, re-arm and catch up in the claimed ``data_dir``;
    the marker is removed last (the directory is usable from then on)."""
    pgdata = data_dir / "pgdata"
    try:
        run_program(
            "pg_combinebackup",
            *(str(backup_path(directory, b.backup_id)) for b in chain),
            "-o",
            str(pgdata),
        )
    except BackupToolError as exc:
        raise RestoreFailedError(f"restore failed combining the backups: {exc}") from None
    _drop_source_locks(pgdata)
    wal_source = _continuous_wal(data_dir, wal_dir(directory), archive)
    arm_recovery(pgdata, wal_source, to_time)
    if before_recovery is not None:
        before_recovery()
    server = EmbeddedPostgres(data_dir, restoring=True)
    try:
        server.start()
        try:
            with psycopg.connect(libpq_url(server.url), autocommit=True) as connection:
                promoted_at = _wait_for_promotion(connection)
                _require_replayed(connection, archive, to_time)
                for statement in reset_recovery_sql():
                    connection.execute(statement)
                connection.execute("SELECT pg_reload_conf()")
                rearmed = rearm(connection, cdc)
                caught_up = catch_up(connection)
                sync_paused = read_pause(connection).paused
        finally:
            server.stop()
            if wal_source != wal_dir(directory):
                shutil.rmtree(wal_source, ignore_errors=True)
    except (EmbeddedDatabaseError, psycopg.OperationalError) as exc:
        # Recovery that cannot reach the target ends the server, seen here as a failed
        # start or a lost connection: the server log says which.
        log = server.layout.log_file
        text = log.read_text(errors="replace") if log.exists() else ""
        if to_time is not None and _TARGET_NOT_REACHED in text:
            raise RestoreTimeOutOfRangeError(
                f"--to-time {to_time.isoformat()} is past the end of the archived WAL in "
                f"{wal_dir(directory)}: the newest restorable time is earlier"
            ) from None
        first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        raise RestoreFailedError(f"restore failed: {first}") from None
    (data_dir / RESTORE_MARKER).unlink()
    return promoted_at, rearmed, caught_up, sync_paused


def _require_replayed(
    connection: Connection, archive: ArchiveCheck, to_time: datetime | None
) -> None:
    """Raise ``RestoreFailedError`` when recovery (without ``to_time``) stopped before the
    newest commit the archive check found: WAL it counted on was removed or damaged after the
    check, and recovery ended early without an error of its own."""
    if to_time is not None or archive.newest_commit_lsn is None:
        return  # recovery itself fails a target it cannot reach; the backup end is always
    row = connection.execute(
        "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_replay_lsn() >= %s::pg_lsn",
        (archive.newest_commit_lsn,),
    ).fetchone()
    assert row is not None
    replayed, reached = row
    if not reached:
        raise RestoreFailedError(
            f"restore failed: recovery replayed WAL to {replayed} only, short of the newest "
            f"restorable point checked before it started (the commit at "
            f"{archive.newest_commit_at.isoformat() if archive.newest_commit_at else '?'}, "
            f"LSN {archive.newest_commit_lsn}): archived WAL after {replayed} was removed or "
            "damaged during the restore; check `hartonomous backup verify`, then restore again"
        )


def _claim_target(data_dir: Path) -> bool:
    """Claim ``data_dir`` for this restore: create it (or take it empty) and make its
    ``RESTORE_MARKER`` with O_EXCL, holding this pid; whether the directory was created.
    Raises ``RestoreTargetInUseError`` when another restore claimed it first (naming its pid)
    or something else is in it; nothing is removed then."""
    make_server_dir(data_dir.parent)
    try:
        data_dir.mkdir()
        created = True
    except FileExistsError:
        created = False
    marker = data_dir / RESTORE_MARKER
    try:
        handle = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise RestoreTargetInUseError(_marker_refusal(data_dir)) from None
    with os.fdopen(handle, "w") as out:
        out.write(f"{os.getpid()}\n")
    if any(child.name != RESTORE_MARKER for child in data_dir.iterdir()):
        marker.unlink()
        raise RestoreTargetInUseError(
            f"restore target {data_dir} is not empty: restore into a new directory"
        )
    give_to_server_user(data_dir)
    return created


def _remove_claimed(data_dir: Path, created: bool) -> None:
    """Undo a claimed restore: what is in ``data_dir`` is this restore's (its marker kept any
    other out), and the directory itself when this restore created it."""
    if created:
        shutil.rmtree(data_dir, ignore_errors=True)
        return
    for child in data_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _marker_refusal(data_dir: Path) -> str:
    """Why ``data_dir`` holding ``RESTORE_MARKER`` is refused: another restore runs into it
    (its pid), or one was killed there."""
    try:
        text = (data_dir / RESTORE_MARKER).read_text(errors="replace").strip()
    except OSError:
        text = ""
    if not text.isdigit():
        return (
            f"restore target {data_dir} is being claimed by another restore: restore into a "
            "new directory"
        )
    if _process_alive(int(text)):
        return (
            f"restore target {data_dir} is being restored into by another restore (pid "
            f"{text}): restore into a new directory, or wait for that one to end"
        )
    return (
        f"restore target {data_dir} holds a restore that did not finish (pid {text}, no longer "
        f"running; {RESTORE_MARKER} present): remove it (rm -rf {data_dir}) and restore again"
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_source_locks(pgdata: Path) -> None:
    """Remove the source server's lock files a backup copied (pg_basebackup leaves out
    `postmaster.pid` but not the socket's `.s.PGSQL.<port>.lock`, which names the live
    server's pid): the restored cluster must not look like the source's running server."""
    for stale in [
        *pgdata.glob(".s.PGSQL.*"),
        *(pgdata / n for n in ("postmaster.pid", "postmaster.opts")),
    ]:
        if stale.is_file() or stale.is_socket():
            stale.unlink()


def _wait_for_promotion(connection: Connection) -> datetime:
    deadline = time.monotonic() + PROMOTION_TIMEOUT_SECONDS
    while True:
        row = connection.execute("SELECT pg_is_in_recovery(), now()").fetchone()
        assert row is not None
        if not row[0]:
            return row[1]  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise RestoreFailedError(
                f"restore failed: recovery still running after {PROMOTION_TIMEOUT_SECONDS} s"
            )
        time.sleep(0.2)
