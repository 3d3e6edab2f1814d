"""Which PostgreSQL and pgvector the platform runs on, and what it refuses (real servers)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.conftest import Cli
from tests.integration.server_support import copied_install, refused_upgrade

from hartonomous.db import EmbeddedPostgres
from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import install_dir


def test_embedded_server_is_postgresql_18_with_pgvector_0_8(embedded_cli: Cli) -> None:
    upgraded = embedded_cli("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    status = json.loads(embedded_cli("--json", "db", "status").stdout)
    assert status["server_version"].startswith("18.")
    assert status["pgvector_installed"].startswith("0.8.")
    smoke = embedded_cli("smoke")
    assert "PASS database reachable: PostgreSQL 18." in smoke.stdout
    assert "PASS pgvector present: vector 0.8." in smoke.stdout


@pytest.mark.parametrize("other_major", ["16", "19"])
def test_data_dir_of_another_major_version_is_refused_before_starting(
    embedded_cli: Cli, data_dir: Path, other_major: str
) -> None:
    # A real cluster, stopped, then labelled as another major's (PG_VERSION is what PostgreSQL
    # itself reads to know a data directory's format).
    assert embedded_cli("db", "upgrade").exit_code == 0
    pgdata = data_dir / "pgdata"
    (pgdata / "PG_VERSION").write_text(f"{other_major}\n")
    result = embedded_cli("db", "status")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"initialised by PostgreSQL {other_major}" in lines[0]
    assert "the embedded server is PostgreSQL 18" in lines[0]
    assert "docs/database.md" in lines[0]
    assert not (pgdata / "postmaster.pid").exists()
    assert (pgdata / "PG_VERSION").read_text() == f"{other_major}\n"
    # The way forward is written where the message points.
    docs = (Path(__file__).parents[2] / "docs" / "database.md").read_text()
    assert "## Another PostgreSQL major version" in docs


def _one_error_line(embedded_cli: Cli) -> str:
    result = embedded_cli("db", "status")
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("kind", ["folder with a file", "file"])
def test_a_pgdata_that_is_no_cluster_is_refused_before_initdb(
    embedded_cli: Cli, data_dir: Path, kind: str
) -> None:
    # The example (a folder holding a file: initdb's rename failed with a traceback
    # and left a 39 MB pgdata.init-* behind) and a plain file named pgdata.
    pgdata = data_dir / "pgdata"
    if kind == "file":
        pgdata.write_text("notes")
    else:
        pgdata.mkdir()
        (pgdata / "x").write_text("someone's data")
    line = _one_error_line(embedded_cli)
    assert f"data dir {pgdata} exists but is not a PostgreSQL cluster (no PG_VERSION)" in line
    assert "move it away" in line
    assert not list(data_dir.glob("pgdata.init-*"))
    # Nothing of the user's was touched.
    kept = pgdata if kind == "file" else pgdata / "x"
    assert kept.read_text() == ("notes" if kind == "file" else "someone's data")


@pytest.mark.parametrize("content", ["garbage\n", "", "18beta\n"])
def test_a_pg_version_that_is_no_version_is_named_as_such(
    embedded_cli: Cli, data_dir: Path, content: str
) -> None:
    pgdata = data_dir / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text(content)
    line = _one_error_line(embedded_cli)
    assert f"{pgdata / 'PG_VERSION'} holds {content.strip()!r}" in line
    assert "which is not a PostgreSQL version" in line
    assert "initialised by PostgreSQL" not in line
    assert (pgdata / "PG_VERSION").read_text() == content
    assert not list(data_dir.glob("pgdata.init-*"))


def test_old_pgvector_installed_is_refused_by_upgrade_and_smoke(
    cli: Cli, database_url: str
) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        # The catalogue entry every client reads the installed version from.
        connection.execute("UPDATE pg_extension SET extversion = '0.7.4' WHERE extname = 'vector'")
    upgraded = cli("db", "upgrade")
    assert upgraded.exit_code == 1
    lines = upgraded.stderr.strip().splitlines()
    assert len(lines) == 1, upgraded.stderr
    assert "pgvector 0.7.4 is installed in the database" in lines[0]
    assert "needs >= 0.8" in lines[0]
    assert "ALTER EXTENSION vector UPDATE" in lines[0]
    smoke = cli("smoke")
    assert smoke.exit_code == 1
    assert "FAIL pgvector present: pgvector 0.7.4 is installed in the database" in smoke.stdout


@pytest.fixture
def server_offering_old_pgvector(data_root: Path, data_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL whose pgvector package says 0.7.4 (control file and install script)."""
    install = copied_install(
        data_root,
        "old-vector",
        ignore=lambda _dir, names: [n for n in names if n.startswith("vector--")],
    )
    extension = install / "share" / "extension"
    if not (extension / "vector--0.7.4.sql").exists():
        shutil.copy(
            install_dir() / "share" / "extension" / "vector--0.8.6.sql",
            extension / "vector--0.7.4.sql",
        )
        control = extension / "vector.control"
        control.write_text(control.read_text().replace("'0.8.6'", "'0.7.4'"))
    with EmbeddedPostgres(data_dir, install=install) as server:
        yield server


def test_server_offering_old_pgvector_is_refused_by_upgrade(
    server_offering_old_pgvector: EmbeddedPostgres, data_dir: Path
) -> None:
    line = refused_upgrade(server_offering_old_pgvector, data_dir)
    assert "the server offers pgvector 0.7.4" in line
    assert "needs >= 0.8" in line
    with psycopg.connect(libpq_url(server_offering_old_pgvector.url)) as connection:
        # Refused before any migration ran: nothing was created.
        assert connection.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,)
