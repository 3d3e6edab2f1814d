"""Continuous WAL archiving from a configured server: `pg_receivewal` beside `up`.

The embedded server archives its own WAL (`archive_command`, `db.embedded`). A configured
server's WAL reaches `<backup directory>/wal` through `pg_receivewal` on a physical
replication slot (`[backup] wal_slot_name`), so no segment is recycled before it is received.
The segment being written is kept as `<name>.partial`; restore reads it too.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import structlog

from hartonomous.backup.take import replication_target
from hartonomous.backup.tools import run_program
from hartonomous.db.embedded import install_dir, make_server_dir, server_system_user

log = structlog.get_logger(__name__)
_RETRY_SECONDS = 5.0
_STOP_GRACE_SECONDS = 10.0


def receive_wal(url: str, wal_dir: Path, slot: str, stop: threading.Event) -> None:
    """Run `pg_receivewal` into ``wal_dir`` until ``stop`` is set, restarting it (after 5 s)
    whenever it ends; logs `wal_receiver_failed` with its first error line each time."""
    make_server_dir(wal_dir)
    conninfo, password = replication_target(url)
    connection = ["-d", conninfo, "--no-password"]
    while not stop.is_set():
        try:
            # Idempotent: the slot keeps the server's WAL until it is received.
            run_program(
                "pg_receivewal",
                *connection,
                "--slot",
                slot,
                "--create-slot",
                "--if-not-exists",
                password=password,
            )
        except Exception as exc:  # noqa: BLE001 - logged; retried while `up` runs
            log.error("wal_receiver_failed", error=str(exc))
            stop.wait(_RETRY_SECONDS)
            continue
        _receive_until_stopped(connection, wal_dir, slot, password, stop)
        stop.wait(_RETRY_SECONDS)


def _receive_until_stopped(
    connection: list[str], wal_dir: Path, slot: str, password: str | None, stop: threading.Event
) -> None:
    user = server_system_user()
    env = {"PGPASSWORD": password} if password else {}
    process = subprocess.Popen(
        [
            str(install_dir() / "bin" / "pg_receivewal"),
            *connection,
            "-D",
            str(wal_dir),
            "--slot",
            slot,
            "--synchronous",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        env=env,
        cwd="/",
    )
    log.info("wal_receiver_started", directory=str(wal_dir), slot=slot)
    while process.poll() is None and not stop.wait(0.5):
        pass
    if process.poll() is None:
        process.terminate()  # pg_receivewal flushes what it received and exits
        try:
            process.wait(_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return
    lines = (process.stderr.read() if process.stderr else "").splitlines()
    errors = [line for line in lines if "error:" in line] or lines
    log.error("wal_receiver_failed", error=next(iter(errors), f"exit code {process.returncode}"))
