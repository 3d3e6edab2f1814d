"""`billing invoice`: a tenant's invoice preview for a period, against golden files of a seeded
scenario, split by the plan version in force, rounded to cents only at the line."""

from __future__ import annotations

import json
import os
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from tests.conftest import Cli

from hartonomous.config import load_settings
from hartonomous.db.migrate import head_revision
from hartonomous.security import ensure_tenant
from hartonomous.services import Platform
from hartonomous.services.billing import invoice

from . import invoice_scenario as scenario

GOLDEN = Path(__file__).parents[2] / "data" / "invoice"


@pytest.fixture
def seeded(engine: Engine, tmp_path: Path) -> None:
    scenario.seed(engine, load_settings(overrides={"data_dir": tmp_path}).billing)


def _golden(name: str, produced: str) -> str:
    path = GOLDEN / name
    if os.environ.get("WRITE_GOLDEN_FILES") == "1":
        path.write_text(produced, encoding="utf-8", newline="")
    return path.read_text(encoding="utf-8")


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("output_format", ["json", "csv"])
def test_the_seeded_scenario_previews_to_its_golden_bytes(cli: Cli, output_format: str) -> None:
    runs = [
        cli(
            "billing",
            "invoice",
            "--tenant",
            "acme",
            "--period",
            scenario.PERIOD,
            "--format",
            output_format,
        )
        for _ in range(2)
    ]
    assert runs[0].exit_code == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout == _golden(f"acme-{scenario.PERIOD}.{output_format}", runs[0].stdout)


def _preview(engine: Engine, tmp_path: Path, tenant: str, period: str) -> dict[str, Any]:
    settings = load_settings(overrides={"data_dir": tmp_path})
    platform = Platform(engine, settings, head_revision(), maintenance_engine=engine)
    preview = invoice(platform, tenant, period, across_tenants=True)
    data: dict[str, Any] = json.loads(preview.to_json())
    return data


def _cents(value: Decimal) -> Decimal:
    # Half away from zero; every figure here is positive, so half up is the same.
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@pytest.mark.usefixtures("seeded")
def test_a_plan_change_mid_period_splits_usage_by_the_rates_in_force(
    engine: Engine, tmp_path: Path
) -> None:
    data = _preview(engine, tmp_path, "acme", scenario.PERIOD)
    api_calls = [line for line in data["lines"] if line["operation"] == scenario.API_CALL]
    by_rate: dict[tuple[str, str], Decimal] = {
        (line["rate"], line["multiplier"]): Decimal(line["quantity"]) for line in api_calls
    }
    # Up to the 15th at 23:00 version 1 (0.02); from the 16th at 00:00 version 2 (0.03).
    assert by_rate == {
        ("0.020000", "1.000000"): Decimal("1235"),
        ("0.020000", "3.000000"): Decimal("10"),
        ("0.030000", "1.000000"): Decimal("1234.5"),
        ("0.030000", "3.000000"): Decimal("7"),
    }
    for line in api_calls:
        rate, multiplier = Decimal(line["rate"]), Decimal(line["multiplier"])
        dcu = Decimal(line["quantity"]) * rate * multiplier
        assert Decimal(line["dcu"]) == dcu
        assert Decimal(line["amount"]) == _cents(dcu * Decimal("0.0125"))
    effective = {line["rate"]: line["plan_effective_from"] for line in api_calls}
    assert effective == {
        "0.020000": "2026-09-01T00:00:00Z",
        "0.030000": "2026-10-16T00:00:00Z",
    }
    # The fee, storage and seats follow the version in force at the period's end.
    fee = data["lines"][0]
    assert (fee["kind"], fee["amount"]) == ("monthly_fee", "59.99")
    assert data["total"] == str(sum(Decimal(line["amount"]) for line in data["lines"]))


@pytest.mark.usefixtures("seeded")
def test_storage_counts_reached_leaves_per_holder_as_gb_month(
    engine: Engine, tmp_path: Path
) -> None:
    storage = {
        tenant: {
            line["description"]: Decimal(line["quantity"])
            for line in _preview(engine, tmp_path, tenant, scenario.PERIOD)["lines"]
            if line["kind"] == "storage"
        }
        for tenant in ("acme", "globex")
    }
    # acme: the composite reaches 1.5 + 0.75 GB all month (the leaf held again counts once);
    # 0.75 GB public from the 16th, 16 of 31 days.
    assert storage["acme"] == {
        "private storage": Decimal("2.25"),
        "public storage": (Decimal("0.75") * 16 / 31).quantize(Decimal("0.000001")),
    }
    # globex holds the big leaf acme reaches too: shared bytes count for each holder.
    assert storage["globex"] == {"private storage": Decimal("1.5"), "public storage": 0}


def test_archived_rows_count_in_the_preview(cli: Cli, engine: Engine, tmp_path: Path) -> None:
    scenario.seed(engine, load_settings(overrides={"data_dir": tmp_path}).billing)
    before = _preview(engine, tmp_path, "acme", scenario.PERIOD)
    archived = cli("ledger", "archive", "--before", "2026-11", "-o", str(tmp_path / "cold"))
    assert archived.exit_code == 0, archived.stderr
    after = _preview(engine, tmp_path, "acme", scenario.PERIOD)
    usage_before = _per_operation(before, "usage")
    assert _per_operation(after, "usage") == {}
    assert usage_before
    assert _per_operation(after, "archived_usage") == usage_before


def _per_operation(data: dict[str, Any], kind: str) -> dict[str, tuple[Decimal, Decimal]]:
    sums: dict[str, tuple[Decimal, Decimal]] = {}
    for line in data["lines"]:
        if line["kind"] == kind:
            units, dcu = sums.get(line["operation"], (Decimal(0), Decimal(0)))
            sums[line["operation"]] = (
                units + Decimal(line["quantity"]),
                dcu + Decimal(line["dcu"]),
            )
    return sums


@pytest.mark.parametrize(
    ("arguments", "exit_code", "message"),
    [
        (("--tenant", "nobody", "--period", "2026-10"), 1, "unknown tenant 'nobody'"),
        (("--tenant", "acme", "--period", "2999-01"), 2, "is in the future"),
        (("--tenant", "acme", "--period", "2026-13"), 2, "not a month written YYYY-MM"),
        (("--tenant", "acme", "--period", "Oct 2026"), 2, "not a month written YYYY-MM"),
        (("--tenant", "acme", "--period", "2026-10", "--format", "xml"), 2, "xml"),
    ],
)
def test_bad_input_is_named(
    cli: Cli, engine: Engine, arguments: tuple[str, ...], exit_code: int, message: str
) -> None:
    with engine.begin() as connection:
        ensure_tenant(connection, "acme", "Acme")
    result = cli("billing", "invoice", *arguments)
    assert result.exit_code == exit_code, result.stdout
    assert message in result.stderr
    assert result.stdout == ""
