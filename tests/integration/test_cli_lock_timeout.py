"""A lock or statement timeout met by a command names what waited, not only PostgreSQL's
"canceling statement due to lock timeout"."""

from __future__ import annotations

from pathlib import Path

import psycopg
from sqlalchemy import Engine
from tests.conftest import Cli
from tests.integration.data_plane.data_plane_support import add_tenant

from hartonomous.db.connection import libpq_url


def test_ingest_meeting_a_locked_table_names_the_statement(
    cli: Cli, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    add_tenant(engine, "acme")
    text = tmp_path / "note.txt"
    text.write_text("A note.\n", encoding="utf-8")
    short = Cli(env={**cli.env, "HARTONOMOUS_DATABASE__LOCK_TIMEOUT_SECONDS": "0.2"}, cwd=cli.cwd)
    with psycopg.connect(libpq_url(database_url)) as blocker:
        blocker.execute("LOCK TABLE ingestion_jobs IN EXCLUSIVE MODE")  # reads still pass
        result = short("ingest", str(text), "--tenant", "acme")
    assert result.exit_code == 1, result.stderr
    assert "canceling statement due to lock timeout" in result.stderr
    assert "ingestion_jobs" in result.stderr
