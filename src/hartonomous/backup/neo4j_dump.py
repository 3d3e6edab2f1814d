"""`graph backup` / `graph restore`: Neo4j's own `neo4j-admin database dump` / `load`.

Hartonomous ships no Neo4j: these wrap the `neo4j-admin` of an installation the operator names
(`[neo4j] admin_command`, else `$NEO4J_HOME/bin/neo4j-admin`). It runs with the environment of
this process, so `NEO4J_HOME` / `NEO4J_CONF` decide which installation's configuration (and data
directory) it reads. Neo4j Community can dump and load only a database that is not running:
stop Neo4j first (neo4j-admin refuses otherwise, and its line is shown). Without an
installation, the way back for Neo4j is to start it empty and run `graph catch-up`
(docs/operations.md, "Neo4j").
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hartonomous.errors import OperationFailedError, UsageError

__all__ = [
    "Neo4jAdminFailedError",
    "Neo4jAdminMissingError",
    "Neo4jDump",
    "dump_database",
    "load_database",
    "neo4j_admin",
]

# A dump of a large store takes long; a hung program must still end.
ADMIN_TIMEOUT_SECONDS = 6 * 3600


class Neo4jAdminMissingError(UsageError):
    """No `neo4j-admin` is configured or found."""

    code = "neo4j-admin-missing"


class Neo4jAdminFailedError(OperationFailedError):
    """`neo4j-admin` exited non-zero; the message is its last error line."""

    code = "neo4j-admin-failed"


@dataclass(frozen=True)
class Neo4jDump:
    """A dump file written by `graph backup`: its path and size (bytes)."""

    database: str
    path: Path
    size_bytes: int


def neo4j_admin(admin_command: str) -> Path:
    """The `neo4j-admin` to run: ``admin_command`` when set, else `$NEO4J_HOME/bin/neo4j-admin`.

    Raises ``Neo4jAdminMissingError`` naming what is missing.
    """
    if admin_command:
        program = Path(admin_command)
        if not (program.is_file() and os.access(program, os.X_OK)):
            raise Neo4jAdminMissingError(
                f"[neo4j] admin_command {admin_command} is not an executable file"
            )
        return program
    home = os.environ.get("NEO4J_HOME")
    if home and (Path(home) / "bin" / "neo4j-admin").is_file():
        return Path(home) / "bin" / "neo4j-admin"
    missing = f"NEO4J_HOME {home} has no bin/neo4j-admin" if home else "neither is NEO4J_HOME set"
    raise Neo4jAdminMissingError(
        "graph backup/restore needs Neo4j's neo4j-admin: set [neo4j] admin_command to its path "
        f"({missing}); without it, start Neo4j empty and run `hartonomous graph catch-up`"
    )


def dump_database(admin: Path, database: str, to_dir: Path) -> Neo4jDump:
    """`neo4j-admin database dump DATABASE --to-path=TO_DIR` (the folder is created).

    Refuses (``UsageError``) a folder that already holds ``<database>.dump``: a backup never
    overwrites another. Raises ``Neo4jAdminFailedError`` when neo4j-admin fails (for example,
    the database is running: Community dumps only a stopped database).
    """
    target = to_dir / f"{database}.dump"
    if target.exists():
        raise UsageError(f"{target} exists: give graph backup an empty or new folder")
    to_dir.mkdir(parents=True, exist_ok=True)
    _run(admin, "database", "dump", database, f"--to-path={to_dir}")
    if not target.is_file():
        raise Neo4jAdminFailedError(f"neo4j-admin database dump wrote no {target}")
    return Neo4jDump(database, target, target.stat().st_size)


def load_database(admin: Path, database: str, from_dir: Path, *, overwrite: bool) -> Neo4jDump:
    """`neo4j-admin database load DATABASE --from-path=FROM_DIR` (``<database>.dump`` there).

    ``overwrite``: replace an existing database (`--overwrite-destination=true`); without it
    neo4j-admin refuses a database that exists. Raises ``UsageError`` when the dump file is
    missing, ``Neo4jAdminFailedError`` when neo4j-admin fails (e.g. the database is running).
    """
    source = from_dir / f"{database}.dump"
    if not source.is_file():
        raise UsageError(f"no dump of database {database!r} in {from_dir} (expected {source})")
    _run(
        admin,
        "database",
        "load",
        database,
        f"--from-path={from_dir}",
        f"--overwrite-destination={'true' if overwrite else 'false'}",
    )
    return Neo4jDump(database, source, source.stat().st_size)


def _run(admin: Path, *args: str) -> None:
    try:
        result = subprocess.run(
            [str(admin), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=ADMIN_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Neo4jAdminFailedError(f"neo4j-admin {' '.join(args[:2])} failed: {exc}") from exc
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines()]
        reason = next((line for line in reversed(lines) if line), f"exit {result.returncode}")
        raise Neo4jAdminFailedError(f"neo4j-admin {' '.join(args[:2])} failed: {reason}")
