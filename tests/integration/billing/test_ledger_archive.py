"""`ledger archive` / `ledger restore-archive`: closed periods leave the hot table only into a
verified Parquet archive, come back exactly, and a killed archive never loses or doubles a row."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from tests.conftest import Cli

from hartonomous.billing import archive as archive_module
from hartonomous.billing.export import verify_export
from hartonomous.billing.meter import UsageRecord
from hartonomous.config import Settings
from hartonomous.config.sections import DatabaseSettings
from hartonomous.services import open_platform
from hartonomous.services.ledger_files import archive_ledger

from .conftest import expected_totals, make_record, move_to_period, write_ledger

_ROWS = """
SELECT event_id, tenant_id, principal_id, operation, message_type, handler,
       units::text, base_rate::text, multiplier::text, total_dcu::text, unit_price::text,
       total_cost::text, rate_plan_id, metadata::text, recorded_at, billing_period, ledger_id
FROM billing_usage_ledger ORDER BY event_id
"""


def _table(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(_ROWS))]


def _archive_totals(engine: Engine, tenant: str, period: str) -> dict[str, dict[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT operation, row_count, units::text, total_dcu::text, total_cost::text "
                "FROM billing_ledger_archive_totals "
                "WHERE tenant_id = :tenant AND billing_period = CAST(:period AS date)"
            ),
            {"tenant": tenant, "period": f"{period}-01"},
        )
        return {
            op: {"rows": str(n), "units": u, "total_dcu": d, "total_cost": c}
            for op, n, u, d, c in rows
        }


def test_archive_then_restore_round_trips_every_row_exactly(
    cli: Cli, engine: Engine, ledger: dict[str, list[UsageRecord]], tmp_path: Path
) -> None:
    globex_earlier = [f"evt-globex-{index}" for index in range(100, 140)]
    move_to_period(engine, globex_earlier, "2026-02")
    # Rows written before migration 0032 hold jsonb's text of their metadata (the column's
    # conversion kept it), the others the meter's compact text: both come back as they were.
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE billing_usage_ledger SET metadata = metadata::jsonb::json "
                "WHERE event_id = ANY(:ids)"
            ),
            {"ids": globex_earlier[:20]},
        )
    before = _table(engine)
    texts = {row[0]: row[13] for row in before}
    assert '": "' in texts[globex_earlier[0]]
    assert '": "' not in texts[globex_earlier[-1]]
    archived = cli("--json", "ledger", "archive", "--before", "2026-03", "-o", str(tmp_path))
    assert archived.exit_code == 0, archived.stderr
    assert [(a["period"], a["rows"]) for a in json.loads(archived.stdout)] == [
        ("2026-01", 40),
        ("2026-02", 40),
    ]
    left = _table(engine)
    assert len(left) == len(before) - 80
    assert all(str(row[15]) >= "2026-03-01" for row in left)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-01", "2026-02"]
    for folder in tmp_path.iterdir():
        assert cli("ledger", "verify", str(folder)).exit_code == 0
    # What left the table is kept as totals per tenant and operation, for reports.
    assert _archive_totals(engine, "acme", "2026-01") == expected_totals(ledger["acme-earlier"])
    assert _archive_totals(engine, "globex", "2026-02") == expected_totals(ledger["globex"][100:])
    again = cli("--json", "ledger", "archive", "--before", "2026-03", "-o", str(tmp_path / "x"))
    assert again.exit_code == 0
    assert json.loads(again.stdout) == []

    restored = cli("--json", "ledger", "restore-archive", str(tmp_path))
    assert restored.exit_code == 0, restored.stderr
    assert _table(engine) == before  # ids, times, metadata and money (scale 6) unchanged
    assert _archive_totals(engine, "acme", "2026-01") == {}
    twice = cli("ledger", "restore-archive", str(tmp_path / "2026-01"))
    assert twice.exit_code == 1
    assert "is not a recorded archive of this database that is still archived" in twice.stderr
    assert _table(engine) == before


def test_a_tampered_archive_or_a_bad_cut_off_changes_nothing(
    cli: Cli, engine: Engine, ledger: dict[str, list[UsageRecord]], tmp_path: Path
) -> None:
    future = cli("ledger", "archive", "--before", "2999-01", "-o", str(tmp_path / "a"))
    assert future.exit_code == 2
    assert "period '2999-01' is in the future" in future.stderr
    occupied = tmp_path / "b" / "2026-01"
    occupied.mkdir(parents=True)
    (occupied / "mine.txt").write_text("keep")
    before = _table(engine)
    busy = cli("ledger", "archive", "--before", "2026-03", "-o", str(tmp_path / "b"))
    assert busy.exit_code == 1
    assert f"archive directory {occupied} is not empty" in busy.stderr
    assert _table(engine) == before
    move_to_period(engine, [f"evt-globex-{index}" for index in range(100, 140)], "2026-02")
    assert cli("ledger", "archive", "--before", "2026-03", "-o", str(tmp_path / "c")).exit_code == 0
    data = next((tmp_path / "c" / "2026-02").glob("*.parquet"))
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))
    tampered = cli("ledger", "restore-archive", str(tmp_path / "c"))
    assert tampered.exit_code == 1
    assert "SHA-256" in tampered.stderr
    # All or nothing: the intact 2026-01 was not restored either.
    assert len(_table(engine)) == len(before) - 80


def test_sigkill_at_any_moment_leaves_each_row_in_the_table_or_in_a_recorded_archive(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    rng = random.Random(11)  # noqa: S311 - repeatable test data, not secrets
    periods = ["2026-01", "2026-02", "2026-03", "2026-04"]
    records = {period: [make_record(rng, "acme") for _ in range(6000)] for period in periods}
    write_ledger(engine, records, prefix="kill")
    for period in periods:
        move_to_period(engine, [f"kill-{period}-{i}" for i in range(6000)], period)
    everything = _table(engine)
    out = tmp_path / "archives"
    # Killed at moments seen from outside, each new since that run began: while a period is
    # being written (a new staging folder), right after a period's archive committed (a new
    # record, maybe not yet renamed), once a period's folder is in place.
    moments = ["staging", "recorded", "in place", "staging", "recorded", "staging"]
    for moment in moments:
        baseline = _progress(engine, out)
        process = cli.spawn("ledger", "archive", "--before", "2026-05", "-o", str(out))
        while process.poll() is None and not _progress(engine, out)[moment] - baseline[moment]:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        _check_never_neither_never_both(engine, everything, out)
    finished = cli("--json", "ledger", "archive", "--before", "2026-05", "-o", str(out))
    assert finished.exit_code == 0, finished.stderr
    _check_never_neither_never_both(engine, everything, out)
    assert sorted(p.name for p in out.iterdir()) == periods  # no staging folder left
    assert cli("ledger", "restore-archive", str(out)).exit_code == 0
    assert _table(engine) == everything


def _progress(engine: Engine, out: Path) -> dict[str, set[str]]:
    """Staging folders, folders in place and archive records, by name."""
    names = [p.name for p in out.iterdir()] if out.exists() else []
    with engine.connect() as connection:
        records = connection.execute(
            text("SELECT archive_id::text FROM billing_ledger_archives WHERE restored_at IS NULL")
        ).scalars()
        recorded = set(records)
    return {
        "staging": {name for name in names if name.startswith(".")},
        "in place": {name for name in names if not name.startswith(".")},
        "recorded": recorded,
    }


def _check_never_neither_never_both(
    engine: Engine, everything: list[tuple[Any, ...]], out: Path
) -> None:
    """Each period is wholly in the table, or wholly gone from it with a recorded archive whose
    files (in place, or in the staging folder its record names) verify."""
    with engine.connect() as connection:
        records = {
            str(period)[:7]: (Path(path), Path(staging))
            for period, path, staging in connection.execute(
                text(
                    "SELECT billing_period, path, staging_path FROM billing_ledger_archives "
                    "WHERE restored_at IS NULL"
                )
            )
        }
    in_table: dict[str, int] = {}
    for row in _table(engine):
        key = str(row[15])[:7]
        in_table[key] = in_table.get(key, 0) + 1
    for period in ("2026-01", "2026-02", "2026-03", "2026-04"):
        if period in records:
            assert in_table.get(period, 0) == 0, f"{period} is archived and still in the table"
            path, staging = records[period]
            folder = path if path.exists() else staging
            assert verify_export(folder).ok, f"{period}'s archive does not verify"
        else:
            assert in_table.get(period, 0) == 6000, f"{period} lost rows without an archive"
    assert len(everything) == sum(in_table.values()) + 6000 * len(records)


@pytest.mark.usefixtures("ledger")
def test_an_archive_committed_but_not_moved_into_place_is_finished_by_the_next_run(
    cli: Cli,
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one window a kill rarely hits: after the commit, before the rename."""
    everything = _table(engine)

    def killed_before_rename(staging: Path, target: Path) -> None:
        raise SystemExit("killed")

    with monkeypatch.context() as patch:
        patch.setattr(archive_module, "_move_into_place", killed_before_rename)
        settings = Settings(database=DatabaseSettings(url=database_url), data_dir=cli.cwd)
        with pytest.raises(SystemExit), open_platform(settings) as platform:
            archive_ledger(platform, "2026-03", tmp_path)
    (staging,) = tmp_path.iterdir()
    assert staging.name.startswith(".2026-01.")
    assert len(_table(engine)) == len(everything) - 40  # committed: the rows left the table
    assert verify_export(staging).ok  # and are in the verified files its record names
    finished = cli("--json", "ledger", "archive", "--before", "2026-03", "-o", str(tmp_path))
    assert finished.exit_code == 0, finished.stderr
    assert json.loads(finished.stdout) == []
    assert [p.name for p in tmp_path.iterdir()] == ["2026-01"]
    assert cli("ledger", "restore-archive", str(tmp_path)).exit_code == 0
    assert _table(engine) == everything
