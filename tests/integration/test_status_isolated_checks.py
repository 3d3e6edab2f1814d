"""`status` with one check's table locked by another session: that check is a FAIL line naming
the lock, and every other line of the screen is still printed."""

from __future__ import annotations

import psycopg
from tests.conftest import Cli


def test_a_locked_ledger_is_its_checks_fail_line_and_the_screen_is_printed(
    cli: Cli, database_url: str
) -> None:
    holder_url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(holder_url) as holder:
        holder.execute("LOCK TABLE billing_usage_ledger IN ACCESS EXCLUSIVE MODE")
        result = cli("status")
        holder.rollback()
    lines = result.stdout.splitlines()
    assert result.exit_code == 1, result.stderr
    named = {line[5:].split("  ")[0].strip(): line for line in lines if line[:4].strip()}
    assert named["ledger"].startswith("FAIL"), lines
    assert (
        "the ledger check waited on a lock: canceling statement due to lock timeout"
        in (named["ledger"])
    ), named["ledger"]
    assert "billing_usage_ledger" in named["ledger"]
    for check in ("database", "change capture", "sync pause", "backlog", "dead letters", "disk"):
        assert check in named, f"{check} missing from the screen: {lines}"
    assert named["database"].startswith("OK")
    assert named["backlog"].startswith("OK")
    assert lines[-1] == "overall FAIL"
