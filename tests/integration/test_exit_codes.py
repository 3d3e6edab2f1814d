"""Exit codes as scripts rely on them: 0 success, 1 the work failed, 2 a usage error."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.conftest import Cli


def test_ingest_of_a_missing_file_exits_1_and_counts_the_failure(cli: Cli, data_dir: Path) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    missing = cli("ingest", "/nonexistent/file", "--tenant", "acme")
    assert missing.exit_code == 1, missing.stdout + missing.stderr
    assert "does not exist" in missing.stdout
    assert "1 files, 1 failed" in missing.stdout


def test_ingest_exits_1_when_any_file_failed_and_0_when_none_did(cli: Cli, data_dir: Path) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    good = data_dir / "good.txt"
    good.write_text("a perfectly good file\n")
    empty = data_dir / "empty.txt"
    empty.write_bytes(b"")
    mixed = cli("--json", "ingest", str(good), str(empty), "--tenant", "acme")
    assert mixed.exit_code == 1, mixed.stderr
    summary = json.loads(mixed.stdout)
    assert (summary["status"], summary["failed"]) == ("completed_with_errors", 1)
    fine = cli("--json", "ingest", str(good), "--tenant", "acme")
    assert fine.exit_code == 0, fine.stderr
    assert json.loads(fine.stdout)["failed"] == 0


def test_work_failures_exit_1_and_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    failures = [
        ("holdings", "delete", str(uuid.uuid4()), "--tenant", "acme"),
        ("deadletters", "show", "424242"),
        ("tenants", "disable", "ghost"),
    ]
    for args in failures:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.stderr)
        assert result.stderr.startswith("hartonomous: error: "), (args, result.stderr)
    usage = [
        ("ingest", "--frobnicate"),
        ("search", "hello", "--tenant", "acme", "-k", "0"),
        ("atoms", "show", "not-hex", "--tenant", "acme"),
        ("deadletters", "purge", "--older-than", "1d"),
        ("tenants", "create", "bad id"),
        ("ingest", "x", "--tenant", "acme", "--visibility", "everyone"),
    ]
    for args in usage:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
    assert cli("atoms", "gc").exit_code == 0
    assert cli("tenants", "list").exit_code == 0
