"""Point-in-time recovery settings of a restored cluster (written before its first start)."""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path

from hartonomous.db.embedded import give_to_server_user

_SETTINGS = ("restore_command", "recovery_target_time", "recovery_target_action")


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def arm_recovery(pgdata: Path, archive: Path, to_time: datetime | None) -> None:
    """Make the next start of ``pgdata`` replay archived WAL from ``archive`` (to ``to_time``,
    or to the end of the archive) and then promote. PostgreSQL refuses to start when the
    target lies past the archived WAL ("recovery ended before configured recovery target was
    reached")."""
    # A segment still being written by pg_receivewal is kept as <name>.partial.
    source = shlex.quote(str(archive))
    command = f"cp {source}/%f %p 2>/dev/null || cp {source}/%f.partial %p"
    lines = [f"restore_command = {_quoted(command)}", "recovery_target_action = 'promote'"]
    if to_time is not None:
        lines.append(f"recovery_target_time = {_quoted(to_time.isoformat())}")
    auto_conf = pgdata / "postgresql.auto.conf"
    with auto_conf.open("a") as handle:
        handle.write("\n# hartonomous restore (removed once recovery ends)\n")
        handle.write("\n".join(lines) + "\n")
    signal = pgdata / "recovery.signal"
    signal.touch()
    give_to_server_user(signal)
    # The embedded server keeps its socket in pgdata: the base backup copied the socket's
    # lock file, which would make the restored server think another one runs there.
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    for lock in pgdata.glob(".s.PGSQL.*.lock"):
        lock.unlink()


def reset_recovery_sql() -> list[str]:
    """Statements that remove the recovery settings once the server is promoted."""
    return [f"ALTER SYSTEM RESET {name}" for name in _SETTINGS]
