"""`ledger export` / `ledger verify`: a period's rows and a manifest, byte-identical on every
run, exact (no float), and a delivered export checked down to one changed byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.conftest import Cli

from hartonomous.billing.meter import UsageRecord

from .conftest import expected_totals


def _manifest_totals(manifest: dict[str, object]) -> dict[str, dict[str, str]]:
    totals = manifest["totals"]
    assert isinstance(totals, list)
    return {
        t["operation"]: {
            "rows": str(t["rows"]),
            "units": t["units"],
            "total_dcu": t["total_dcu"],
            "total_cost": t["total_cost"],
        }
        for t in totals
    }


def _this_month() -> str:
    return f"{datetime.now(UTC):%Y-%m}"


@pytest.mark.parametrize("export_format", ["csv", "parquet"])
def test_a_period_exports_to_identical_bytes_with_exact_totals(
    cli: Cli, ledger: dict[str, list[UsageRecord]], tmp_path: Path, export_format: str
) -> None:
    period = _this_month()
    runs = []
    for name in ("first", "second"):
        result = cli(
            "--json",
            "ledger",
            "export",
            "--period",
            period,
            "--format",
            export_format,
            "-o",
            str(tmp_path / name),
        )
        assert result.exit_code == 0, result.stderr
        runs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert runs[0] == runs[1]
    assert set(runs[0]) == {"manifest.json", f"ledger-{period}.{export_format}"}
    manifest = json.loads(runs[0]["manifest.json"])
    everyone = ledger["acme"] + ledger["globex"]
    assert manifest["row_count"] == len(everyone) == 260
    assert _manifest_totals(manifest) == expected_totals(everyone)
    assert {t["currency"] for t in manifest["totals"]} == {"USD"}
    data = tmp_path / "first" / f"ledger-{period}.{export_format}"
    if export_format == "parquet":
        table = pq.read_table(data)
        assert str(table.schema.field("total_cost").type) == "decimal128(18, 6)"
        costs = sorted(table.column("total_cost").to_pylist())
        assert costs == sorted(record.total_cost for record in everyone)
        assert all(isinstance(cost, Decimal) for cost in costs)
    verified = cli("--json", "ledger", "verify", str(tmp_path / "first"))
    assert verified.exit_code == 0, verified.stdout
    assert json.loads(verified.stdout) == {
        "ok": True,
        "problems": [],
        "period": period,
        "row_count": 260,
    }


def test_a_tenant_and_an_earlier_period_export_only_their_rows(
    cli: Cli, ledger: dict[str, list[UsageRecord]], tmp_path: Path
) -> None:
    own = cli(
        "--json",
        "ledger",
        "export",
        "--period",
        _this_month(),
        "--tenant",
        "acme",
        "-o",
        str(tmp_path / "acme"),
    )
    assert own.exit_code == 0, own.stderr
    assert _manifest_totals(json.loads(own.stdout)) == expected_totals(ledger["acme"])
    earlier = cli("--json", "ledger", "export", "--period", "2026-01", "-o", str(tmp_path / "jan"))
    assert earlier.exit_code == 0, earlier.stderr
    manifest = json.loads(earlier.stdout)
    assert manifest["row_count"] == 40
    assert _manifest_totals(manifest) == expected_totals(ledger["acme-earlier"])
    lines = (tmp_path / "jan" / "ledger-2026-01.csv").read_text().splitlines()
    assert lines[0].startswith("ledger_id,event_id,tenant_id,principal_id,operation,")


def test_verify_names_a_changed_byte_a_changed_total_and_a_stray_file(
    cli: Cli, ledger: dict[str, list[UsageRecord]], tmp_path: Path
) -> None:
    period = _this_month()
    export = tmp_path / "export"
    assert cli("ledger", "export", "--period", period, "-o", str(export)).exit_code == 0
    data = export / f"ledger-{period}.csv"
    original = data.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x01
    data.write_bytes(bytes(changed))
    result = cli("--json", "ledger", "verify", str(export))
    assert result.exit_code == 1
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem.startswith(f"ledger-{period}.csv: SHA-256 ")
    data.write_bytes(original)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["totals"][0]["total_cost"] = "1.000000"
    (export / "manifest.json").write_text(json.dumps(manifest))
    (export / "notes.txt").write_text("stray")
    problems = json.loads(cli("--json", "ledger", "verify", str(export)).stdout)["problems"]
    assert "unexpected file notes.txt" in problems
    operation = manifest["totals"][0]["operation"]
    assert any(f"totals of {operation} (USD) are" in p and "cost 1.000000" in p for p in problems)


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ("2026-13", "is not a month written YYYY-MM"),
        ("26-11", "is not a month written YYYY-MM"),
        ("2026-11-01", "is not a month written YYYY-MM"),
        ("2999-01", "is in the future"),
    ],
)
def test_a_bad_period_is_refused_naming_it_and_nothing_is_written(
    cli: Cli, ledger: dict[str, list[UsageRecord]], tmp_path: Path, period: str, message: str
) -> None:
    result = cli("ledger", "export", "--period", period, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert f"period {period!r} {message}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_directory_or_an_unknown_tenant_writes_nothing(
    cli: Cli, ledger: dict[str, list[UsageRecord]], tmp_path: Path
) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    result = cli("ledger", "export", "--period", _this_month(), "-o", str(occupied))
    assert result.exit_code == 1
    assert f"export directory {occupied} is not empty" in result.stderr
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    unknown = cli(
        "ledger",
        "export",
        "--period",
        _this_month(),
        "--tenant",
        "nobody",
        "-o",
        str(tmp_path / "nobody"),
    )
    assert unknown.exit_code == 1
    assert "nobody" in unknown.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]
