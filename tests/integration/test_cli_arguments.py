"""Arguments a terminal passes as bytes that are not UTF-8 get the command's usual answer."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli, CliResult

# What a Latin-1 terminal sends for "é"; Python hands it over as U+DCE9 (surrogateescape).
E_ACUTE = b"\xe9".decode("utf-8", "surrogateescape")


def _run(cli: Cli, *args: str) -> CliResult:
    # The arguments reach the command as the surrogate-escaped text Python makes of such bytes.
    return cli(*args, errors="surrogateescape")


def test_undecodable_arguments_get_the_usual_usage_errors(cli: Cli, data_dir: Path) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    (data_dir / "f.txt").write_text("hello\n")
    for args in [
        ("tenants", "show", E_ACUTE),
        ("search", "x", "--tenant", E_ACUTE),
        ("ingest", str(data_dir / "f.txt"), "--tenant", E_ACUTE),
        ("ingest", str(data_dir / "f.txt"), "--tenant", "acme", "--dedup-policy", E_ACUTE),
    ]:
        refused = _run(cli, "--json", *args)
        assert refused.exit_code == 2, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
        # The byte is shown as \xe9 wherever the error names the value.
        assert "\\xe9" in refused.stderr or "xe9" in refused.stderr, (args, refused.stderr)


def test_an_undecodable_query_or_filter_is_searched_as_visible_text(cli: Cli) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    for option in ("--modality", "--source-type"):
        # No file has such a modality or source type: refused, naming the value as visible text.
        filtered = _run(cli, "--json", "search", "x", "--tenant", "acme", option, E_ACUTE)
        assert filtered.exit_code == 2, (option, filtered.stderr)
        assert "Traceback" not in filtered.stderr
        assert "xe9" in filtered.stderr, (option, filtered.stderr)
    for mode in ("lexical", "semantic", "hybrid"):
        searched = _run(
            cli, "--json", "search", f"caf{E_ACUTE}", "--tenant", "acme", "--mode", mode
        )
        assert searched.exit_code == 0, (mode, searched.stderr)
        assert json.loads(searched.stdout) is not None


def test_a_non_utf8_file_name_still_ingests_with_its_exact_bytes(cli: Cli, data_dir: Path) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    name = f"caf{E_ACUTE}.txt"
    (data_dir / name).write_text("bonjour\n")
    ingested = _run(cli, "--json", "ingest", str(data_dir / name), "--tenant", "acme")
    assert ingested.exit_code == 0, ingested.stderr
    [file] = json.loads(ingested.stdout)["files"]
    assert file["status"] == "ingested", file


def test_a_malformed_tenant_id_is_a_usage_error_in_every_command(cli: Cli, data_dir: Path) -> None:
    (data_dir / "f.txt").write_text("hello\n")
    for tenant in ("A B", "bad id"):
        for args in [
            ("tenants", "show", tenant),
            ("search", "x", "--tenant", tenant),
            ("ingest", str(data_dir / "f.txt"), "--tenant", tenant),
        ]:
            refused = cli(*args)
            assert refused.exit_code == 2, (args, refused.stderr)
            assert f"{tenant!r} is not a tenant id" in refused.stderr
            assert "tenants create" not in refused.stderr


def test_a_principal_id_longer_than_its_column_is_a_usage_error(cli: Cli, data_dir: Path) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    (data_dir / "f.txt").write_text("hello\n")
    for principal in ("p" * 257, ""):
        refused = cli(
            "ingest", str(data_dir / "f.txt"), "--tenant", "acme", "--principal", principal
        )
        assert refused.exit_code == 2, refused.stderr
        assert "is not a principal id: 1-256 characters" in refused.stderr
        assert "database error" not in refused.stderr
    jobs = cli(
        "--json", "ingest", str(data_dir / "f.txt"), "--tenant", "acme", "--principal", "p" * 256
    )
    assert jobs.exit_code == 0, jobs.stderr


def test_file_names_are_printed_with_control_characters_escaped(cli: Cli, data_dir: Path) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    folder = data_dir / "in"
    folder.mkdir()
    (folder / "b_esc\x1b[31mRED\x1b[0m.txt").write_text("red\n")
    (folder / "new\nline.txt").write_text("two lines\n")
    ingested = cli("ingest", str(folder), "--tenant", "acme")
    assert ingested.exit_code == 0, ingested.stderr
    assert "\x1b" not in ingested.stdout
    assert "b_esc\\x1b[31mRED\\x1b[0m.txt" in ingested.stdout
    assert "new\\nline.txt" in ingested.stdout
    # One line per file and the job line: no name split a line.
    assert len(ingested.stdout.splitlines()) == 3, ingested.stdout
    found = cli("search", "red", "--tenant", "acme", "--mode", "lexical")
    assert found.exit_code == 0, found.stderr
    assert "\x1b" not in found.stdout
    # --json keeps the exact names (JSON escapes them itself).
    listed = cli("--json", "ingest", str(folder), "--tenant", "acme")
    names = {Path(f["path"]).name for f in json.loads(listed.stdout)["files"]}
    assert names == {"b_esc\x1b[31mRED\x1b[0m.txt", "new\nline.txt"}
