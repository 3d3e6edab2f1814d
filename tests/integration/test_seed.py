"""`db seed`: the Publisher Core plan from settings, a sample tenant and principal, idempotent."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, func, select, text

from hartonomous.config import load_settings
from hartonomous.db.tables import (
    api_keys,
    billing_multipliers,
    billing_operation_rates,
    billing_rate_plans,
    principals,
    tenants,
)
from hartonomous.ops.seed import SAMPLE_PRINCIPAL_ID, SAMPLE_TENANT_ID, seed
from hartonomous.security import parse_api_key, secret_matches
from hartonomous.security.authentication import authenticate
from hartonomous.security.roles import Role

TABLES = (
    tenants,
    principals,
    api_keys,
    billing_rate_plans,
    billing_operation_rates,
    billing_multipliers,
)


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as connection:
        return {
            table.name: sorted((tuple(row) for row in connection.execute(select(table))), key=repr)
            for table in TABLES
        }


def test_seed_twice_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    settings = load_settings(overrides={"data_dir": tmp_path})
    first = seed(engine, settings)
    after_first = snapshot(engine)
    second = seed(engine, settings)
    assert snapshot(engine) == after_first
    assert first.plan.status == "created"
    assert second.plan.status == "unchanged"
    assert first.sample_api_key is not None
    assert second.sample_api_key is None
    assert (second.sample_tenant_created, second.sample_principal_created) == (False, False)


def test_seeded_plan_is_publisher_core(engine: Engine, tmp_path: Path) -> None:
    seed(engine, load_settings(overrides={"data_dir": tmp_path}))
    with engine.connect() as connection:
        plan = connection.execute(
            select(billing_rate_plans).where(billing_rate_plans.c.tenant_id.is_(None))
        ).one()
        rates = {
            r.operation: (r.rate, r.unit_of_measure, r.category)
            for r in connection.execute(select(billing_operation_rates))
        }
        multipliers = {
            (m.dimension, m.key): m.multiplier
            for m in connection.execute(select(billing_multipliers))
        }
    assert plan.plan_code == "publisher_core"
    assert plan.monthly_fee == Decimal("2500")
    assert plan.default_rate == Decimal("0.0105")
    assert plan.unit_price_per_dcu == Decimal("0.00008")
    assert (plan.included_public_storage_gb, plan.included_private_storage_gb) == (120, 40)
    assert plan.included_seat_count == 25
    assert plan.allows_private_data
    assert plan.can_query_public_corpus
    assert rates == {
        "neo4j_sync.model_updated": (Decimal("0.025"), "dcu", "model_management"),
        "neo4j_sync.inference_completed": (Decimal("0.04"), "dcu", "generation"),
        "neo4j_sync.ingest_completed": (Decimal("0.018"), "dcu", "ingestion"),
    }
    assert len(multipliers) == 19  # 4 + 3 + 3 + 3 + 3 + 3 across the six dimensions
    assert multipliers[("generation", "video")] == Decimal("3.8")
    assert multipliers[("provenance", "immutable_ledger")] == Decimal("1.5")


def test_only_the_api_key_hash_is_stored(engine: Engine, tmp_path: Path) -> None:
    report = seed(engine, load_settings(overrides={"data_dir": tmp_path}))
    assert report.sample_api_key is not None
    key_id, secret = parse_api_key(report.sample_api_key)
    with engine.connect() as connection:
        row = connection.execute(select(api_keys).where(api_keys.c.key_id == key_id)).one()
        dump = connection.execute(text("SELECT row_to_json(k)::text FROM api_keys k")).scalar_one()
    assert (row.tenant_id, row.principal_id) == (SAMPLE_TENANT_ID, SAMPLE_PRINCIPAL_ID)
    assert secret not in dump
    assert secret_matches(secret, row.secret_sha256)
    # The key `up` prints administers the platform.
    assert authenticate(engine, report.sample_api_key).role is Role.ADMIN


def test_changed_settings_are_reported_then_applied_on_request(
    engine: Engine, tmp_path: Path
) -> None:
    seed(engine, load_settings(overrides={"data_dir": tmp_path}))
    changed = load_settings(
        overrides={
            "data_dir": tmp_path,
            "billing": {"default_rate": "0.02", "operation_rates": {"custom.op": "1.5"}},
        }
    )
    assert seed(engine, changed).plan.status == "differs"
    with engine.connect() as connection:
        assert connection.execute(
            select(billing_rate_plans.c.default_rate)
        ).scalar_one() == Decimal("0.0105")
    updated = seed(engine, changed, update_plan=True).plan
    assert updated.status == "updated"
    assert seed(engine, changed).plan.status == "unchanged"
    with engine.connect() as connection:
        # A new version: the first one, which rows may have been priced with, is kept as it was.
        rates = connection.execute(
            select(billing_rate_plans.c.rate_plan_id, billing_rate_plans.c.default_rate).order_by(
                billing_rate_plans.c.effective_from
            )
        ).all()
        operations = (
            connection.execute(
                select(billing_operation_rates.c.operation).where(
                    billing_operation_rates.c.rate_plan_id == updated.rate_plan_id
                )
            )
            .scalars()
            .all()
        )
        plans = connection.execute(select(func.count()).select_from(billing_rate_plans)).scalar()
    assert [rate for _, rate in rates] == [Decimal("0.0105"), Decimal("0.02")]
    assert rates[1].rate_plan_id == updated.rate_plan_id
    assert operations == ["custom.op"]
    assert plans == 2
