"""`ledger report` and `GET /v1/ledger/report`: totals from the rollup equal the sums of the
ledger rows they cover, however the rows arrived (inserts, replays, archive and restore)."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, text
from tests.conftest import Cli

from hartonomous.billing.ledger import LedgerEntry, write_entries
from hartonomous.billing.meter import UsageRecord
from hartonomous.messaging.broker import psycopg_connection

from .conftest import make_record, write_ledger

SIX = Decimal("0.000001")


def _direct_sums(engine: Engine, group: str, since: date, until: date) -> dict[str, list[str]]:
    """The same totals summed straight from the ledger rows (and nothing else)."""
    key = {
        "tenant": "tenant_id",
        "operation": "operation",
        "principal": "coalesce(principal_id, '')",
        "day": "((recorded_at AT TIME ZONE 'UTC')::date)::text",
    }[group]
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                f"SELECT {key}, count(*), sum(units), sum(total_dcu), sum(total_cost) "
                "FROM billing_usage_ledger WHERE (recorded_at AT TIME ZONE 'UTC')::date "
                ">= :since AND (recorded_at AT TIME ZONE 'UTC')::date < :until GROUP BY 1"
            ),
            {"since": since, "until": until},
        )
        return {
            str(k): [str(n), *(str(Decimal(v).quantize(SIX)) for v in (u, d, c))]
            for k, n, u, d, c in rows
        }


def _report(cli: Cli, group: str, since: date, until: date) -> dict[str, list[str]]:
    result = cli(
        "--json",
        "ledger",
        "report",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        "--group-by",
        group,
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    lines = {
        row[group]: [str(row["rows"]), row["units"], row["total_dcu"], row["total_cost"]]
        for row in data["rows"]
    }
    total = data["total"]
    for index, name in enumerate(("units", "total_dcu", "total_cost"), start=1):
        assert Decimal(total[name]) == sum(Decimal(line[index]) for line in lines.values())
    return lines


def test_the_rollup_equals_the_rows_after_inserts_replays_archive_and_restore(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    rng = random.Random(5)  # noqa: S311 - repeatable test data, not secrets
    today = datetime.now(UTC).date()
    window = (today - timedelta(days=400), today + timedelta(days=1))
    records = {
        tenant: [make_record(rng, tenant) for _ in range(rng.randrange(50, 150))]
        for tenant in ("acme", "globex", "initech")
    }
    write_ledger(engine, records)
    # Replays and redeliveries: the same event ids again, in batches that mix in new ones.
    replay = [LedgerEntry(f"evt-acme-{i}", records["acme"][i], None) for i in range(30)]
    fresh = [make_record(rng, "acme") for _ in range(20)]
    replay += [LedgerEntry(f"late-acme-{i}", r, None) for i, r in enumerate(fresh)]
    with engine.connect() as connection:
        session = psycopg_connection(connection.execution_options(isolation_level="AUTOCOMMIT"))
        assert len(write_entries(session, replay)) == 20
        assert write_entries(session, replay) == set()
    # Kept by the trigger alone: inserts counted once, replays not at all.
    for group in ("tenant", "operation", "principal"):
        assert _report(cli, group, *window) == _direct_sums(engine, group, *window)
    # Spread the rows over days and months (as if billed then), then archive old periods.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM billing_usage_rollup"))
        connection.execute(
            text(
                "UPDATE billing_usage_ledger SET recorded_at = now() - "
                "(abs(hashtext(event_id)) % 300) * interval '1 day'"
            )
        )
        connection.execute(
            text(
                "UPDATE billing_usage_ledger SET billing_period = "
                "(date_trunc('month', recorded_at AT TIME ZONE 'UTC'))::date"
            )
        )
        # The rollup rebuilt from the moved rows, as migration 0026 builds it.
        connection.execute(
            text(
                "INSERT INTO billing_usage_rollup SELECT tenant_id, "
                "(recorded_at AT TIME ZONE 'UTC')::date, billing_period, "
                "coalesce(principal_id, ''), operation, count(*), sum(units), sum(total_dcu), "
                "sum(total_cost) FROM billing_usage_ledger GROUP BY 1, 2, 3, 4, 5"
            )
        )
    for group in ("tenant", "operation", "principal", "day"):
        assert _report(cli, group, *window) == _direct_sums(engine, group, *window)
    before = {group: _report(cli, group, *window) for group in ("tenant", "operation")}
    cut = (today.replace(day=1) - timedelta(days=95)).strftime("%Y-%m")
    archived = cli("--json", "ledger", "archive", "--before", cut, "-o", str(tmp_path))
    assert archived.exit_code == 0, archived.stderr
    assert json.loads(archived.stdout), "the test data left nothing to archive"
    # Archived usage still happened: the report is unchanged though the rows left the table.
    for group, lines in before.items():
        assert _report(cli, group, *window) == lines
    restored = cli("ledger", "restore-archive", str(tmp_path))
    assert restored.exit_code == 0, restored.stderr
    for group, lines in before.items():
        assert _report(cli, group, *window) == lines
        assert _direct_sums(engine, group, *window) == lines


def test_month_grouping_csv_and_tenant_scope(
    cli: Cli, engine: Engine, ledger: dict[str, list[UsageRecord]]
) -> None:
    today = datetime.now(UTC).date()
    month = today.strftime("%Y-%m")
    result = cli(
        "ledger",
        "report",
        "--period",
        month,
        "--group-by",
        "tenant",
        "--group-by",
        "operation",
        "--csv",
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "tenant,operation,rows,units,total_dcu,total_cost"
    assert lines[-1].startswith("total,total,300,")
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for record in ledger["acme"] + ledger["globex"] + ledger["acme-earlier"]:
        sums["cost"] += record.total_cost
    assert Decimal(lines[-1].split(",")[-1]) == sums["cost"]
    own = cli("--json", "ledger", "report", "--period", month, "--tenant", "globex")
    assert json.loads(own.stdout)["total"]["total_cost"] == str(
        sum((r.total_cost for r in ledger["globex"]), Decimal(0)).quantize(SIX)
    )
    unknown = cli("ledger", "report", "--period", month, "--tenant", "nosuch")
    assert unknown.exit_code == 1
    assert "nosuch" in unknown.stderr
    for bad, message in (
        (["--period", month, "--since", "2026-01-01"], "not both"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "range is empty"),
        (["--since", "yesterday", "--until", "2026-01-01"], "--since 'yesterday' is not a day"),
        (["--period", "2026-13"], "is not a month written YYYY-MM"),
    ):
        refused = cli("ledger", "report", *bad)
        assert refused.exit_code == 2, bad
        assert message in refused.stderr, (bad, refused.stderr)


def test_the_runbooks_ledger_report_commands_run_as_written(cli: Cli) -> None:
    """docs/operations.md's daily check and incident step 1, with YYYY-MM as this month."""
    runbook = (Path(__file__).parents[3] / "docs" / "operations.md").read_text()
    commands = {
        " ".join(found.split())
        for found in re.findall(r"`((?:hartonomous )?ledger report[^`]*)`", runbook)
    }
    assert len(commands) >= 2, commands
    month = datetime.now(UTC).strftime("%Y-%m")
    for command in sorted(commands):
        words = command.replace("YYYY-MM", month).split()
        result = cli(*words[words.index("ledger") :])
        assert result.exit_code == 0, f"{command}: {result.stderr}"
