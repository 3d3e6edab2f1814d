"""Fault: backup -> wipe -> restore -> catch-up, with ingestion running throughout.

Uploads go on through `up` while `backup full` runs and after it (WAL archived); the live
cluster is then wiped, `restore` rebuilds it from the backup and the archive, `up` starts on
the restored directory and uploads go on there while `graph catch-up` runs. Every holding
committed before the incident is back, and every holding, event, graph node and ledger row is
present exactly once. (tests/integration/backup/test_backup_restore.py: restores without load.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from tests.conftest import Cli, clean_environment
from tests.integration.faults.fault_support import (
    Client,
    bearer,
    drained,
    exactly_once_counts,
    running_up,
    scalar,
    wait_until,
)

from hartonomous.db import EmbeddedPostgres


def _holding_ids(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return {str(row[0]) for row in connection.execute(text("SELECT holding_id FROM holdings"))}


def _archived(engine: Engine) -> None:
    """Switch to a new WAL segment and wait until the finished one is in the archive."""
    segment = scalar(engine, "SELECT pg_walfile_name(pg_switch_wal())")
    wait_until(
        lambda: (scalar(engine, "SELECT last_archived_wal FROM pg_stat_archiver") or "") >= segment,
        f"WAL segment {segment} archived",
    )


def _cli(data_dir: Path) -> Cli:
    env = clean_environment()
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    env["HARTONOMOUS_BACKUP__ARCHIVE_WAL"] = "true"
    return Cli(env=env, cwd=data_dir.parent)


def _ok(cli: Cli, *args: str) -> dict[str, object]:
    result = cli("--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_backup_wipe_restore_catch_up_under_ingestion_keeps_everything_exactly_once(
    data_dir: Path,
) -> None:
    live_dir, restored_dir = data_dir / "live", data_dir / "restored"
    live_dir.mkdir()
    live = _cli(live_dir)
    up = running_up(live.env, live_dir)
    engine = create_engine(EmbeddedPostgres(live_dir).url)
    try:
        with Client(up.url, bearer(engine, "acme"), tag="before") as client:
            wait_until(lambda: client.accepted() >= 2, "uploads before the backup")
            _ok(live, "backup", "full")
            accepted = client.accepted()
            wait_until(lambda: client.accepted() >= accepted + 3, "uploads after the backup")
        # The incident happens once this is archived: everything committed so far is in it.
        wait_until(
            lambda: (
                scalar(engine, "SELECT count(*) FROM ingestion_jobs WHERE status = 'running'") == 0
            ),
            "jobs to finish",
        )
        before = _holding_ids(engine)
        _archived(engine)
    finally:
        engine.dispose()
        assert up.stop() == 0
    assert len(before) >= 10
    shutil.rmtree(live_dir / "pgdata")  # the disaster

    report = _ok(
        live,
        "restore",
        "latest",
        "--data-dir",
        str(restored_dir),
        "--backup-dir",
        str(live_dir / "backups"),
    )
    assert report["chain"], report
    restored = _cli(restored_dir)
    restored.env.pop("HARTONOMOUS_BACKUP__ARCHIVE_WAL")
    up = running_up(restored.env, restored_dir)
    engine = create_engine(EmbeddedPostgres(restored_dir).url)
    try:
        with Client(up.url, bearer(engine, "acme"), tag="after") as client:
            wait_until(lambda: client.accepted() >= 2, "uploads on the restored installation")
            caught_up = restored("--json", "graph", "catch-up")
            assert caught_up.exit_code == 0, caught_up.stderr
            accepted = client.accepted()
            wait_until(lambda: client.accepted() >= accepted + 2, "uploads after the catch-up")
        wait_until(lambda: drained(engine), "the sync side to catch up", up.stderr_tail)
        after = _holding_ids(engine)
        # Every holding committed before the incident is back, and the new ones beside them.
        assert before < after
        counts = exactly_once_counts(engine)
        assert set(counts.values()) == {len(after)}, counts
        assert scalar(engine, "SELECT count(*) FROM message_dead_letters") == 0
        # One tenant node and one atom node per distinct atom held; no node twice (its id is
        # the key) and none missing.
        atoms_held = scalar(engine, "SELECT count(DISTINCT atom_id) FROM holdings")
        atom_nodes = scalar(engine, "SELECT count(*) FROM graph_nodes WHERE label = 'Atom'")
        assert atom_nodes == atoms_held
        # The caught-up restore re-emits nothing now: everything is in the graph and ledger.
        again = json.loads(restored("--json", "graph", "catch-up").stdout.strip().splitlines()[-1])
        assert (again["nodes_written"], again["edges_written"], again["events_emitted"]) == (
            0,
            0,
            0,
        ), again
    finally:
        engine.dispose()
        assert up.stop() == 0
