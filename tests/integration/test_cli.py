"""The command line as an operator uses it: results, --json, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli, clean_environment

from hartonomous.db import head_revision

HEAD = head_revision()


def test_db_status_json_reports_url_revision_and_head(cli: Cli) -> None:
    result = cli("--json", "db", "status")
    assert result.exit_code == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["revision"] == status["head"] == HEAD
    assert status["url"].startswith("postgresql+psycopg://")
    assert status["wal_level"] == "logical"
    assert status["embedded"] is False


def test_db_commands_are_idempotent(cli: Cli) -> None:
    first = json.loads(cli("--json", "db", "upgrade").stdout)
    assert first == {"from": HEAD, "to": HEAD, "changed": False}
    down = json.loads(cli("--json", "db", "downgrade", "base").stdout)
    assert down["to"] is None
    assert json.loads(cli("--json", "db", "current").stdout) == {"revision": None}
    up = json.loads(cli("--json", "db", "upgrade").stdout)
    assert up == {"from": None, "to": HEAD, "changed": True}


def test_seed_prints_the_key_once(cli: Cli) -> None:
    first = cli("db", "seed")
    assert first.exit_code == 0, first.stderr
    assert "sample API key (shown once" in first.stdout
    second = json.loads(cli("--json", "db", "seed").stdout)
    assert second["rate_plan"]["status"] == "unchanged"
    assert second["sample_principal"]["api_key"] is None


def test_smoke_passes_then_names_a_dropped_table(cli: Cli, database_url: str) -> None:
    assert cli("db", "upgrade").exit_code == 0  # also arms change capture
    passed = cli("smoke")
    assert passed.exit_code == 0, passed.stdout + passed.stderr
    assert passed.stdout.count("PASS") == 7

    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE api_keys"))
    engine.dispose()
    failed = cli("smoke")
    assert failed.exit_code == 1
    assert "FAIL schema matches migrations: missing table api_keys" in failed.stdout
    assert failed.stderr.strip().splitlines()[-1].startswith("hartonomous: error: smoke failed")


def test_config_show_masks_the_password(cli: Cli) -> None:
    cli.env["HARTONOMOUS_DATABASE__URL"] = "postgresql://app:hunter2@db.invalid/h"
    result = cli("--json", "config", "show")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert "hunter2" not in result.stdout
    assert shown["database"]["url"] == "postgresql://app:***@db.invalid/h"


def test_bad_configuration_is_one_line_and_exit_2(cli: Cli, data_dir: Path) -> None:
    config = data_dir / "bad.toml"
    config.write_text("[server]\nprot = 1\n")
    result = cli("--config", str(config), "db", "status")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown configuration key 'server.prot'" in lines[0]
    assert "did you mean 'server.port'" in lines[0]


def test_unreachable_database_is_one_line(cli: Cli) -> None:
    cli.env["HARTONOMOUS_DATABASE__URL"] = "postgresql://app:pw@127.0.0.1:9/nowhere"
    result = cli("db", "status")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "cannot use database postgresql+psycopg://app:***@127.0.0.1:9/nowhere" in lines[0]
    assert "refused" in lines[0].lower()


def test_invalid_database_url_is_named(cli: Cli) -> None:
    cli.env["HARTONOMOUS_DATABASE__URL"] = "mysql://root@localhost/db"
    result = cli("--json", "db", "status")
    assert result.exit_code == 1
    assert "only postgresql:// is supported" in json.loads(result.stderr)["error"]


def test_data_dir_that_cannot_be_created_is_named(data_dir: Path) -> None:
    # `db upgrade` makes a missing data dir; read commands refuse one (see the mistyped test).
    blocker = data_dir / "a-file"
    blocker.write_text("not a directory")
    env = clean_environment()
    result = Cli(env=env, cwd=data_dir)("--data-dir", str(blocker / "sub"), "db", "upgrade")
    assert result.exit_code == 1
    assert f"data dir {blocker / 'sub'}" in result.stderr
    assert "not a directory" in result.stderr


def test_unknown_revision_is_named(cli: Cli) -> None:
    result = cli("db", "downgrade", "nonsense")
    assert result.exit_code == 2
    assert "unknown migration revision 'nonsense'" in result.stderr


def test_usage_errors_exit_2(cli: Cli) -> None:
    result = cli("--log-level", "loud", "db", "status")
    assert result.exit_code == 2
    assert "loud" in result.stderr


def test_logs_are_json_lines_with_an_operation_id(cli: Cli) -> None:
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.strip().splitlines()]
    upgraded = next(r for r in records if r["event"] == "migrations_upgraded")
    assert upgraded["operation"] == "db"
    assert len(upgraded["operation_id"]) == 32
    assert upgraded["level"] == "info"
    assert upgraded["timestamp"].endswith("Z")


def test_interrupted_first_start_can_be_rerun(embedded_cli: Cli, data_dir: Path) -> None:
    # What a killed first start leaves behind: initdb's scratch directory, no cluster.
    leftover = data_dir / "pgdata.init-4194301"
    (leftover / "base").mkdir(parents=True)
    result = embedded_cli("--json", "db", "upgrade")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["to"] == HEAD
    assert not leftover.exists()
    assert (data_dir / "pgdata" / "PG_VERSION").exists()


def test_operator_commands_never_create_a_cluster_in_a_mistyped_data_dir(
    embedded_cli: Cli, data_dir: Path
) -> None:
    # Only `up` and `db upgrade` create a cluster (docs/operations.md, "Which commands start
    # the database"); a typo in --data-dir is named, and nothing is made there.
    missing = data_dir / "typo"
    commands = [
        ("status",),
        ("db", "shell", "--", "-c", "SELECT 1"),
        ("db", "current"),
        ("db", "status"),
        ("broker", "status"),
        ("graph", "status"),
        ("tenants", "list"),
    ]
    for command in commands:
        result = embedded_cli("--data-dir", str(missing), *command)
        assert result.exit_code == 1, (command, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert f"data dir {missing} holds no database cluster" in line, command
        assert "only `hartonomous up` and `hartonomous db upgrade` create one" in line
        assert not missing.exists(), command
    # An existing folder without a cluster is refused the same way and left as it was.
    result = embedded_cli("--data-dir", str(data_dir), "db", "current")
    assert result.exit_code == 1
    assert f"data dir {data_dir} holds no database cluster" in result.stderr
    assert list(data_dir.iterdir()) == []


def test_commands_on_an_unmigrated_database_name_the_remedy(cli: Cli) -> None:
    assert cli("db", "downgrade", "base").exit_code == 0
    result = cli("holdings", "list", "--tenant", "sample")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "is at migration none (empty)" in lines[0]
    assert "run `hartonomous db upgrade`" in lines[0]


def test_an_unexpected_database_error_is_one_line(cli: Cli, database_url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO tenants VALUES ('sample', 'Sample')"))
        connection.execute(text("DROP TABLE holdings CASCADE"))
    engine.dispose()
    result = cli("holdings", "list", "--tenant", "sample")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        'hartonomous: error: database error: relation "holdings" does not exist'
    ]
