"""`hartonomous tenants …`, and what a disabled or unknown tenant means to the other commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from tests.conftest import Cli


def test_create_list_show_and_refuse_a_duplicate(cli: Cli) -> None:
    created = cli("--json", "tenants", "create", "acme", "--display-name", "Acme Corp")
    assert created.exit_code == 0, created.stderr
    assert json.loads(created.stdout)["state"] == "active"
    assert cli("tenants", "create", "beta").exit_code == 0
    listed = json.loads(cli("--json", "tenants", "list").stdout)
    assert [(t["tenant_id"], t["display_name"]) for t in listed] == [
        ("acme", "Acme Corp"),
        ("beta", "beta"),
    ]
    shown = cli("tenants", "show", "acme")
    assert shown.exit_code == 0, shown.stderr
    assert "name        Acme Corp" in shown.stdout
    assert "state       active" in shown.stdout
    again = cli("tenants", "create", "acme")
    assert again.exit_code == 1
    assert "tenant 'acme' already exists" in again.stderr
    # Policies compare tenant ids ignoring case: a second id differing only in case would
    # share the first's bans and limits.
    for twin in ("ACME", "Acme"):
        clash = cli("tenants", "create", twin)
        assert clash.exit_code == 1
        assert f"tenant '{twin}' already exists as 'acme' (tenant ids are compared" in clash.stderr
    assert [t["tenant_id"] for t in json.loads(cli("--json", "tenants", "list").stdout)] == [
        "acme",
        "beta",
    ]
    bad = cli("tenants", "create", "not/an id")
    assert bad.exit_code == 2
    assert "is not a tenant id" in bad.stderr
    missing = cli("tenants", "show", "ghost")
    assert missing.exit_code == 1
    assert "create it with `hartonomous tenants create ghost`" in missing.stderr


def test_unknown_tenant_names_the_create_command_in_every_command(cli: Cli, data_dir: Path) -> None:
    (data_dir / "f.txt").write_text("hello\n")
    atom = "00" * 32
    commands = [
        ("ingest", str(data_dir / "f.txt"), "--tenant", "ghost"),
        ("search", "hello", "--tenant", "ghost"),
        ("holdings", "list", "--tenant", "ghost"),
        ("models", "list", "--tenant", "ghost"),
        ("atoms", "show", atom, "--tenant", "ghost"),
        ("atoms", "export", atom, "--tenant", "ghost", "-o", str(data_dir / "out")),
    ]
    for args in commands:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.stderr)
        assert "unknown tenant 'ghost': create it with `hartonomous tenants create ghost`" in (
            result.stderr
        ), args


def test_a_disabled_tenant_is_refused_until_enabled_and_keeps_its_data(
    cli: Cli, data_dir: Path, database_url: str
) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    document = data_dir / "note.txt"
    document.write_text("quarterly figures for the harbour project\n")
    first = json.loads(cli("--json", "ingest", str(document), "--tenant", "acme").stdout)
    atom_id = first["files"][0]["atom_id"]

    disabled = cli("--json", "tenants", "disable", "acme")
    assert disabled.exit_code == 0, disabled.stderr
    assert json.loads(disabled.stdout)["state"] == "disabled"
    assert json.loads(cli("--json", "tenants", "show", "acme").stdout)["holdings"] == 1
    refusal = "tenant 'acme' is disabled: `hartonomous tenants enable acme` re-enables it"
    for args in [
        ("ingest", str(document), "--tenant", "acme"),
        ("search", "harbour", "--tenant", "acme"),
        ("holdings", "list", "--tenant", "acme"),
        ("atoms", "show", atom_id, "--tenant", "acme"),
    ]:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.stderr)
        assert refusal in result.stderr, (args, result.stderr)
    # Disabling twice is not an error, and the refused ingest left no job behind.
    assert cli("tenants", "disable", "acme").exit_code == 0
    engine = create_engine(database_url)
    with engine.connect() as connection:
        jobs = connection.execute(text("SELECT count(*) FROM ingestion_jobs")).scalar_one()
    engine.dispose()
    assert jobs == 1

    assert cli("tenants", "enable", "acme").exit_code == 0
    held = json.loads(cli("--json", "holdings", "list", "--tenant", "acme").stdout)
    assert [h["atom_id"] for h in held] == [atom_id]
    hits = json.loads(cli("--json", "search", "harbour", "--tenant", "acme", "-k", "1").stdout)
    assert "harbour project" in hits[0]["text"]


def test_a_display_name_that_is_not_utf8_is_stored_visibly(cli: Cli) -> None:
    # A terminal in a Latin-1 locale passes "Café" as bytes Python cannot decode; the name must
    # pass the storable boundary (docs/ingest.md) rather than fail in the driver.
    name = b"Caf\xe9".decode("utf-8", "surrogateescape")
    command = [sys.executable, "-m", "hartonomous", "--json", "tenants", "create", "cafe"]
    completed = subprocess.run(
        [*command, "--display-name", name],
        capture_output=True,
        text=True,
        env=cli.env,
        cwd=cli.cwd,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["display_name"] == "Caf\\xe9"
