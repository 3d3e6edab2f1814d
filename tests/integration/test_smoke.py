"""The schema smoke test passes on a fresh database and names what is missing."""

from __future__ import annotations

from sqlalchemy import Engine, text

from hartonomous.cdc import prepare_capture
from hartonomous.config import load_settings
from hartonomous.config.sections import CdcSettings
from hartonomous.db import downgrade
from hartonomous.ops.smoke import SmokeReport, Verdict, run_smoke

CDC = CdcSettings()


def run(engine: Engine) -> SmokeReport:
    return run_smoke(engine, CDC)


def verdicts(engine: Engine) -> dict[str, tuple[Verdict, str]]:
    return {check.name: (check.verdict, check.detail) for check in run(engine).checks}


def test_provisioned_database_passes_every_check(engine: Engine, database_url: str) -> None:
    prepare_capture(database_url, load_settings())
    report = run(engine)
    assert report.passed, report.failures
    assert [check.name for check in report.checks] == [
        "database reachable",
        "pgvector present",
        "migrations at head",
        "schema matches migrations",
        "wal_level logical",
        "write/read round trip",
        "change data capture",
    ]
    assert "lag" in report.checks[-1].detail


def test_capture_not_armed_is_named(engine: Engine) -> None:
    verdict, detail = verdicts(engine)["change data capture"]
    assert verdict == Verdict.FAIL
    assert "slot hartonomous_ces missing" in detail


def test_round_trip_leaves_nothing_behind(engine: Engine) -> None:
    run(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM tenants")).scalar() == 0


def test_dropped_table_is_named(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE billing_multipliers"))
    report = run(engine)
    assert not report.passed
    verdict, detail = verdicts(engine)["schema matches migrations"]
    assert verdict == Verdict.FAIL
    assert "missing table billing_multipliers" in detail


def test_dropped_index_and_check_constraint_are_named(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ux_billing_operation_rates_plan_operation"))
        connection.execute(text("ALTER TABLE tenants DROP CONSTRAINT ck_tenants_tenant_id_format"))
    verdict, detail = verdicts(engine)["schema matches migrations"]
    assert verdict == Verdict.FAIL
    assert "ux_billing_operation_rates_plan_operation" in detail
    assert "ck_tenants_tenant_id_format" in detail


def test_missing_extension_is_named(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP EXTENSION vector CASCADE"))
    verdict, detail = verdicts(engine)["pgvector present"]
    assert verdict == Verdict.FAIL
    assert "'vector' is not installed" in detail


def test_migrations_behind_head_are_named(engine: Engine) -> None:
    downgrade(engine, "0001")
    results = verdicts(engine)
    assert results["migrations at head"][0] == Verdict.FAIL
    assert "database at 0001" in results["migrations at head"][1]
    assert "missing table billing_rate_plans" in results["schema matches migrations"][1]


def test_dropped_reference_count_trigger_is_named(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER holdings_count_refs_delete ON holdings"))
    verdict, detail = verdicts(engine)["schema matches migrations"]
    assert verdict == Verdict.FAIL
    assert "missing trigger holdings_count_refs_delete on holdings" in detail
