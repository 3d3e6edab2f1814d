"""`billing plans ...`: a versioned catalogue. A change is a new version from its effective
time on; a version, once written, never changes, so rows priced with it keep their rates."""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Self

import psycopg
import pytest
from sqlalchemy import Engine, func, select, text
from tests.conftest import Cli

from hartonomous.billing.meter import measure_usage
from hartonomous.billing.plan_provider import PlanProvider, load_configuration
from hartonomous.billing.plan_versions import OperationRate, version_by_id, write_version
from hartonomous.config import load_settings
from hartonomous.db.connection import libpq_url
from hartonomous.db.migrate import head_revision
from hartonomous.db.tables import billing_multipliers, billing_operation_rates, billing_rate_plans
from hartonomous.errors import ConflictError, UsageError
from hartonomous.messaging.broker import psycopg_connection
from hartonomous.security import ensure_tenant
from hartonomous.services import Platform
from hartonomous.services.billing import PlanChange, PlanDraft, change_plan, create_plan, validated

from . import invoice_scenario as scenario

SHORT_LEAD = "HARTONOMOUS_BILLING__PLAN_CACHE_ABSOLUTE_SECONDS"


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        return tuple(  # type: ignore[return-value]
            connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (billing_rate_plans, billing_operation_rates, billing_multipliers)
        )


def test_an_update_is_a_new_version_and_the_old_one_stays(cli: Cli) -> None:
    first_at, second_at = _later(hours=1), _later(hours=2)
    created = _json(
        cli(
            "--json", "billing", "plans", "create", "pro", "--name", "Pro",
            "--set", "monthly_fee=99", "--set", "included_seat_count=3",
            "--rate", "usage.api_call=0.02:call:api", "--rate", "usage.search=0.005",
            "--multiplier", "generation:image=3", "--effective-from", first_at,
        )
    )  # fmt: skip
    assert created["monthly_fee"] == "99.000000"
    assert created["effective_from"] == datetime.fromisoformat(first_at).isoformat().replace(
        "+00:00", "Z"
    )
    updated = _json(
        cli(
            "--json", "billing", "plans", "update", "pro", "--rate", "usage.api_call=0.03",
            "--remove-rate", "usage.search", "--set", "seat_price=10.5",
            "--effective-from", second_at,
        )
    )  # fmt: skip
    assert updated["rate_plan_id"] != created["rate_plan_id"]
    versions = _json(cli("--json", "billing", "plans", "show", "pro"))
    assert [v["rate_plan_id"] for v in versions] == [
        created["rate_plan_id"],
        updated["rate_plan_id"],
    ]
    old, new = versions
    assert old == created
    assert [(r["operation"], r["rate"], r["unit_of_measure"]) for r in old["rates"]] == [
        ("usage.api_call", "0.020000", "call"),
        ("usage.search", "0.005000", ""),
    ]
    assert [(r["operation"], r["rate"], r["category"]) for r in new["rates"]] == [
        ("usage.api_call", "0.030000", None)
    ]
    # What the update did not name is carried over from the version it was based on.
    assert (new["monthly_fee"], new["seat_price"], new["included_seat_count"]) == (
        "99.000000",
        "10.500000",
        3,
    )
    assert new["multipliers"] == [
        {"dimension": "generation", "key": "image", "multiplier": "3.000000"}
    ]
    listed = _json(cli("--json", "billing", "plans", "list"))
    pro = next(plan for plan in listed if plan["plan_code"] == "pro")
    # Neither version is in force yet: the first to come is shown, the plan has two.
    assert (pro["rate_plan_id"], pro["versions"]) == (created["rate_plan_id"], 2)
    assert pro["next_change"] == created["effective_from"]


# Through the command line: its parsing and exit codes.
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--rate", "usage.api_call=-0.01"), "rate of 'usage.api_call' -0.01 is negative"),
        (("--rate", "usage.api_call=cheap"), "rates.0.rate"),
        (("--effective-from", _later(seconds=60)), "is too early"),
    ],
)
def test_bad_changes_are_named_and_write_nothing(
    cli: Cli, engine: Engine, arguments: tuple[str, ...], message: str
) -> None:
    created = cli("billing", "plans", "create", "pro", "--name", "Pro",
                  "--rate", "usage.api_call=0.02")  # fmt: skip
    assert created.exit_code == 0, created.stderr
    before = _counts(engine)
    result = cli("billing", "plans", "update", "pro", *arguments)
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr
    assert _counts(engine) == before


# The same kind through the service (the API's path too), every value a plan refuses.
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rates": [{"operation": "x", "rate": "-1"}]}, "rate of 'x' -1 is negative"),
        ({"rates": [{"operation": "x", "rate": "0.0000001"}]}, "more than 6 decimal places"),
        ({"rates": [{"operation": "x", "rate": "NaN"}]}, "rates.0.rate: Input should be a finite"),
        ({"monthly_fee": "-5"}, "monthly_fee -5 is negative"),
        ({"seat_price": "1e400"}, "seat_price 1E+400 is over"),
        ({"included_seat_count": -1}, "included_seat_count: Input should be greater than or"),
        ({"colour": "red"}, "colour"),
        ({"multipliers": [{"dimension": "generation", "key": "image", "multiplier": "0"}]},
         "must be greater than 0"),
        ({"multipliers": [{"dimension": "colour", "key": "red", "multiplier": "2"}]},
         "unknown multiplier dimension 'colour'"),
        ({"remove_rates": ["usage.unknown"]}, "has no rate for operation 'usage.unknown'"),
        ({"remove_multipliers": [{"dimension": "content", "key": "none"}]},
         "has no content multiplier 'none'"),
        ({"effective_from": "2026-12-01T00:00:00"}, "needs a UTC offset"),
    ],
)  # fmt: skip
def test_every_value_a_plan_refuses_is_named_and_nothing_is_written(
    engine: Engine, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    settings = load_settings(overrides={"data_dir": tmp_path})
    platform = Platform(engine, settings, head_revision(), maintenance_engine=engine)
    create_plan(
        platform,
        validated(
            PlanDraft,
            {
                "plan_code": "pro",
                "name": "Pro",
                "rates": [{"operation": "usage.api_call", "rate": "0.02"}],
                "multipliers": [{"dimension": "generation", "key": "image", "multiplier": "3"}],
            },
        ),
    )
    before = _counts(engine)
    with pytest.raises(UsageError, match=re.escape(message)):
        change_plan(platform, "pro", validated(PlanChange, change))
    assert _counts(engine) == before


def test_unknown_plans_and_tenants_are_named(cli: Cli, engine: Engine) -> None:
    before = _counts(engine)
    for arguments, message in (
        (("update", "ghost", "--set", "monthly_fee=1"), "no plan 'ghost' (global)"),
        (("show", "ghost", "--tenant", "acme"), "no plan 'ghost' (tenant 'acme')"),
        (("deactivate", "ghost"), "no plan 'ghost'"),
        (("create", "pro", "--name", "Pro", "--tenant", "nobody"), "unknown tenant 'nobody'"),
    ):
        result = cli("billing", "plans", *arguments)
        assert result.exit_code == 1, result.stdout
        assert message in result.stderr
    assert _counts(engine) == before


def test_deactivate_and_activate_are_versions_and_idempotent(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    quick = Cli({**cli.env, SHORT_LEAD: "0.001"}, cli.cwd)
    with engine.begin() as connection:
        ensure_tenant(connection, "acme", "Acme")
    assert quick("billing", "plans", "create", "own", "--name", "Own", "--tenant", "acme",
                 "--rate", "usage.api_call=0.5").exit_code == 0  # fmt: skip
    settings = load_settings(overrides={"data_dir": tmp_path})
    off = _json(quick("--json", "billing", "plans", "deactivate", "own", "--tenant", "acme"))
    assert (off["is_active"], off["changed"]) == (False, True)
    again = _json(quick("--json", "billing", "plans", "deactivate", "own", "--tenant", "acme"))
    assert again["changed"] is False
    with engine.connect() as connection:
        session = psycopg_connection(connection)
        # Inactive: the tenant falls back to the settings plan.
        assert load_configuration(session, "acme", settings.billing).rate_plan_id is None
        session.rollback()
    on = _json(quick("--json", "billing", "plans", "activate", "own", "--tenant", "acme"))
    assert (on["is_active"], on["changed"]) == (True, True)
    with engine.connect() as connection:
        session = psycopg_connection(connection)
        plan = load_configuration(session, "acme", settings.billing)
        session.rollback()
    assert str(plan.rate_plan_id) == on["rate_plan_id"]
    assert plan.operation_rates["usage.api_call"] == Decimal("0.5")
    versions = _json(quick("--json", "billing", "plans", "show", "own", "--tenant", "acme"))
    assert [v["is_active"] for v in versions] == [True, False, True]


def test_events_are_priced_by_the_version_in_force_at_their_time(
    engine: Engine, tmp_path: Path
) -> None:
    """The scenario's plan changes on Oct 16; an event's rate follows its own time, and a
    ledger row's plan id names the version, whose rates never change afterwards."""
    billing = load_settings(overrides={"data_dir": tmp_path}).billing
    scenario.seed(engine, billing)
    moments = {
        datetime(2026, 10, 15, 23, 59, 59, 999999, tzinfo=UTC): Decimal("0.02"),
        scenario.SWITCH: Decimal("0.03"),
        datetime(2026, 12, 1, tzinfo=UTC): Decimal("0.03"),
    }
    with engine.connect() as connection:
        session = psycopg_connection(connection)
        for at, rate in moments.items():
            plan = load_configuration(session, "acme", billing, at)
            record = measure_usage(plan, {}, operation=scenario.API_CALL, tenant_id="acme")
            assert record is not None
            assert record.base_rate == rate
            assert record.metadata["rate_plan_code"] == "standard"
        # Before the first version: no plan row applies, the settings plan does.
        early = load_configuration(session, "acme", billing, datetime(2026, 8, 1, tzinfo=UTC))
        assert early.rate_plan_id is None
        session.rollback()
        rows = connection.execute(
            text(
                "SELECT rate_plan_id, base_rate FROM billing_usage_ledger "
                "WHERE operation = :op AND tenant_id = 'acme'"
            ),
            {"op": scenario.API_CALL},
        ).all()
        for rate_plan_id, base_rate in rows:
            version = version_by_id(connection, rate_plan_id)
            stored = {rate.operation: rate.rate for rate in version.rates}
            assert stored[scenario.API_CALL] == base_rate


def test_the_cached_plan_ends_when_the_next_version_takes_effect(
    engine: Engine, tmp_path: Path
) -> None:
    billing = load_settings(overrides={"data_dir": tmp_path}).billing
    ticks = [0.0]
    provider = PlanProvider(billing, clock=lambda: ticks[0])
    with engine.begin() as connection:
        ensure_tenant(connection, "acme", "Acme")
        past = datetime(2026, 1, 1, tzinfo=UTC)
        write_version(connection, replace(scenario.FIRST, tenant_id="acme"), past)
        soon = connection.execute(text("SELECT now() + interval '1 second'")).scalar_one()
        write_version(connection, replace(scenario.SECOND, tenant_id="acme"), soon)
    with engine.connect() as connection:
        session = psycopg_connection(connection.execution_options(isolation_level="AUTOCOMMIT"))
        first = provider.configuration(session, "acme")
        assert first.operation_rates[scenario.API_CALL] == Decimal("0.02")
        # Wait (without a timed assertion) until the database's clock passes the change.
        while session.execute("SELECT now() < %s", (soon,)).fetchone() == (True,):
            time.sleep(0.05)
        # Well inside both cache intervals, yet past the version's effective time.
        ticks[0] = 2.0
        second = provider.configuration(session, "acme")
    assert second.operation_rates[scenario.API_CALL] == Decimal("0.03")
    assert second.rate_plan_id != first.rate_plan_id


class _CountingCursor(psycopg.Cursor[Any]):
    """A real cursor that keeps the text of every statement it runs (no effect on them)."""

    statements: ClassVar[list[str]] = []

    def execute(self, query: Any, params: Any = None, **options: Any) -> Self:
        _CountingCursor.statements.append(str(query))
        return super().execute(query, params, **options)


def _plan_reads() -> int:
    return sum("billing_rate_plans" in statement for statement in _CountingCursor.statements)


def test_events_of_many_times_read_each_plan_interval_once(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """Each event is priced by the version in force at its own time, and a batch of them
    (current and late, in any order) reads the plans once per interval between versions, as
    pricing one event per interval does: not once per event (issue 14)."""
    billing = load_settings(overrides={"data_dir": tmp_path}).billing
    now = datetime.now(UTC)
    first_at, second_at = now - timedelta(days=30), now - timedelta(days=2)
    with engine.begin() as connection:
        ensure_tenant(connection, "acme", "Acme")
        write_version(connection, replace(scenario.FIRST, tenant_id="acme"), first_at)
        write_version(connection, replace(scenario.SECOND, tenant_id="acme"), second_at)
    # (a time, the API_CALL rate in force for the 50 seconds from then; None: no version yet,
    # the settings plan)
    intervals = (
        (first_at - timedelta(days=3), None),
        (first_at, Decimal("0.02")),
        (second_at - timedelta(seconds=60), Decimal("0.02")),
        (second_at + timedelta(hours=1), Decimal("0.03")),
        (now - timedelta(seconds=60), Decimal("0.03")),
    )
    events = [(at + timedelta(seconds=n % 50), rate) for n in range(60) for at, rate in intervals]
    random.Random(3).shuffle(events)  # noqa: S311 - reproducible test data

    def price(times: list[tuple[datetime, Decimal | None]]) -> int:
        provider = PlanProvider(billing)
        _CountingCursor.statements.clear()
        with psycopg.connect(libpq_url(database_url), autocommit=True) as session:
            session.cursor_factory = _CountingCursor
            for at, rate in times:
                configuration = provider.configuration_at(session, "acme", at)
                assert configuration.operation_rates.get(scenario.API_CALL) == rate, at
        return _plan_reads()

    one_per_interval = price([intervals[0], intervals[1], intervals[3]])
    assert price(events) == one_per_interval


def test_a_version_names_its_exact_rates(engine: Engine) -> None:
    """Two versions at the same time are refused; values keep their scale."""
    with engine.begin() as connection:
        at = datetime(2026, 5, 1, tzinfo=UTC)
        version = write_version(
            connection,
            replace(scenario.FIRST, rates=(OperationRate("x", Decimal("0.123456")),)),
            at,
        )
        assert version.rate_plan_id is not None
        with pytest.raises(ConflictError, match="already has a version effective"):
            write_version(connection, scenario.FIRST, at)
        stored = version_by_id(connection, version.rate_plan_id)
    assert stored.rates[0].rate == Decimal("0.123456")
    assert stored.effective_from == at
