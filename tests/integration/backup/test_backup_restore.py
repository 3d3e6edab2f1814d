"""Backups and point-in-time restore on the embedded PostgreSQL 18, through the real CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
from tests.integration.backup.conftest import Live, cli_for, refused, tenants_of

from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import EmbeddedPostgres


def separate_commit_times() -> None:
    # Commit timestamps must differ for a restore target between them to exist.
    time.sleep(0.05)


def test_restore_to_a_time_between_full_and_incremental_shows_exactly_that_state(
    live: Live, work: Path
) -> None:
    full = live.ok("backup", "full")["backup"]
    live.tenant("before-t")
    separate_commit_times()
    between = live.now()
    separate_commit_times()
    live.tenant("after-t")
    incremental = live.ok("backup", "incremental")["backup"]
    assert (incremental["kind"], incremental["parent"]) == ("incremental", full["backup_id"])
    live.tenant("after-incremental")
    live.ok("sync", "pause", "--reason", "restore drill")
    live.conn.execute("SELECT pg_switch_wal()")  # the last segment reaches the archive

    listing = live.ok("backup", "list")
    assert [b["backup_id"] for b in listing["backups"]] == [
        full["backup_id"],
        incremental["backup_id"],
    ]
    assert live.ok("backup", "verify")["ok"] is True
    # `status` names the newest backup (its services are not running here, so it fails as a
    # whole: only the backup line is read).
    status = json.loads(live.cli("--json", "status").stdout)
    (last,) = [check for check in status["checks"] if check["name"] == "last backup"]
    assert last["verdict"] == "OK", last
    assert last["detail"].startswith(incremental["finished_at"].replace("Z", "+00:00")[:19]), last

    at_t = work / "at-t"
    restored = live.ok("restore", "latest", "--to-time", between, "--data-dir", str(at_t))
    assert restored["chain"] == [full["backup_id"]]
    assert tenants_of(at_t) == ["before-t"]

    # The newest state: full + incremental combined, then the archived WAL replayed.
    newest = work / "newest"
    output = live.cli("restore", "latest", "--data-dir", str(newest))
    assert output.exit_code == 0, output.stderr
    assert output.stdout.startswith(
        f"restored {full['backup_id']} + {incremental['backup_id']} into {newest} to the end "
        "of the archived WAL;"
    )
    assert tenants_of(newest) == ["after-incremental", "after-t", "before-t"]
    # The pause is data: restored with it, and said so (the restore to `between` was not).
    assert restored["sync_paused"] is False
    assert (
        "sync is paused in the restored directory (the source's `sync pause` at the restore "
        f"point): resume it with: hartonomous --data-dir {newest} sync resume"
    ) in output.stdout
    # The live side is untouched.
    assert [r[0] for r in live.conn.execute("SELECT tenant_id FROM tenants ORDER BY 1")] == [
        "after-incremental",
        "after-t",
        "before-t",
    ]


def in_flight_event(conn: psycopg.Connection[Any], tenant_id: str) -> None:
    """A message a worker of the live cluster had claimed (and not completed) at backup time."""
    body = {
        "specversion": "1.0",
        "id": "6d1f7f0e-0000-4000-8000-000000000001",
        "source": "/tests",
        "type": "io.hartonomous.cdc.tenants.insert",
        "table": "tenants",
        "operation": "insert",
        "tenantid": tenant_id,
        "data": {"tenant_id": tenant_id, "display_name": tenant_id},
    }
    conn.execute(
        "INSERT INTO broker_messages (queue_name, conversation_id, message_type, body, "
        "attempts, locked_by, locked_until, received_at) VALUES ('hartonomous_message_queue', "
        "%s, %s, %s, 1, 424242, now() + interval '1 hour', now())",
        (f"tenants:{tenant_id}", body["type"], json.dumps(body)),
    )


def test_restore_rearms_capture_so_each_later_change_is_captured_once(
    live: Live, work: Path
) -> None:
    live.tenant("captured")
    assert live.ok("ces-consumer", "--once")["events"] == 1
    assert live.ok("sync", "--once")["completed"] == 1
    in_flight_event(live.conn, "captured")
    live.tenant("uncaptured")  # committed after the checkpoint: never captured before the backup
    live.ok("backup", "full")

    restored_dir = work / "restored"
    report = live.ok("restore", "latest", "--data-dir", str(restored_dir))
    assert report["messages_returned"] == 1
    assert report["catch_up"]["nodes_written"] == 1  # the uncaptured tenant's node

    cli = cli_for(restored_dir, work)
    cli.env.pop("HARTONOMOUS_BACKUP__ARCHIVE_WAL")
    with (
        EmbeddedPostgres(restored_dir) as server,
        psycopg.connect(libpq_url(server.url), autocommit=True) as conn,
    ):
        on_restored = Live(restored_dir, work, server, cli, conn)
        claimed = conn.execute("SELECT locked_by, attempts FROM broker_messages").fetchall()
        assert claimed == [(None, 0)]
        assert on_restored.ok("ces-consumer", "--once")["events"] == 0
        on_restored.tenant("after-restore")
        conn.execute("UPDATE tenants SET display_name = 'renamed' WHERE tenant_id = 'captured'")
        assert on_restored.ok("ces-consumer", "--once")["events"] == 2
        assert on_restored.ok("ces-consumer", "--once")["events"] == 0
        synced = on_restored.ok("sync", "--once")
        assert (synced["completed"], synced["dead_lettered"]) == (3, 0)
        nodes = conn.execute(
            "SELECT node_id, properties->>'display_name' FROM graph_nodes ORDER BY 1"
        ).fetchall()
        assert nodes == [
            ("tenant:after-restore", "after-restore"),
            ("tenant:captured", "renamed"),
            ("tenant:uncaptured", "uncaptured"),
        ]
        assert conn.execute("SELECT count(*) FROM broker_messages").fetchone() == (0,)

        # An incremental backup of the restored cluster into the old backup directory: the
        # newest backup there is of the old timeline.
        on_restored.cli.env["HARTONOMOUS_BACKUP__DIRECTORY"] = str(live.backups)
        error = refused(on_restored, "backup", "incremental")
        assert "was taken on timeline 1, this server is on timeline 2" in error
        assert "take a full backup (`hartonomous backup full`)" in error


def test_bad_restores_and_backups_are_refused_in_one_line_changing_nothing(
    live: Live, work: Path
) -> None:
    full = live.ok("backup", "full")["backup"]
    target = work / "target"

    occupied = work / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert "is not empty" in refused(live, "restore", "latest", "--data-dir", str(occupied))
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    live_error = refused(live, "restore", "latest", "--data-dir", str(live.data_dir))
    assert "a server is running on it" in live_error

    before = "2000-01-01T00:00:00+00:00"
    error = refused(live, "restore", "latest", "--to-time", before, "--data-dir", str(target))
    assert "is before the end of the oldest backup" in error
    error = refused(
        live,
        "restore",
        "latest",
        "--to-time",
        "2999-01-01T00:00:00+00:00",
        "--data-dir",
        str(target),
    )
    assert "is in the future" in error
    # Later than every archived commit: recovery cannot reach it.
    live.tenant("last-commit")
    separate_commit_times()
    past_the_archive = live.now()
    error = refused(
        live, "restore", "latest", "--to-time", past_the_archive, "--data-dir", str(target)
    )
    assert "is past the newest restorable point of backup" in error
    assert not target.exists()

    # Tampered: one byte of a file changed. Incomplete: a file missing.
    backup_dir = live.backups / "base" / full["backup_id"]
    conf = backup_dir / "postgresql.conf"
    conf.write_bytes(conf.read_bytes().replace(b"#", b";", 1))
    error = refused(live, "restore", full["backup_id"], "--data-dir", str(target))
    assert f"backup {full['backup_id']} failed verification" in error
    assert "checksum mismatch" in error
    assert not target.exists()
    verified = live.cli("--json", "backup", "verify")
    assert verified.exit_code == 1
    assert json.loads(verified.stdout.strip().splitlines()[-1])["ok"] is False
    second = live.ok("backup", "full")["backup"]
    (live.backups / "base" / second["backup_id"] / "global" / "pg_control").unlink()
    error = refused(live, "backup", "verify", second["backup_id"])
    assert "1 backup(s) failed verification" in error
    verified = live.cli("backup", "verify", second["backup_id"])
    assert "pg_control" in verified.stdout

    # A backup directory the server's user may not write (a full disk fails the same way).
    unwritable = work / "unwritable"
    unwritable.mkdir(mode=0o555)
    unwritable.chmod(0o555)
    live.cli.env["HARTONOMOUS_BACKUP__DIRECTORY"] = str(unwritable)
    error = refused(live, "backup", "full")
    assert "full backup failed" in error
    assert "Permission denied" in error
    assert list(unwritable.iterdir()) == []
