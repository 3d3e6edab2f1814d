"""Plans from the database: tenant plan, else global plan, else settings; cached with expiry."""

from __future__ import annotations

from decimal import Decimal

import psycopg
from sqlalchemy import Engine

from hartonomous.billing.meter import measure_usage
from hartonomous.billing.plan_provider import PlanProvider, load_configuration
from hartonomous.billing.plans import seed_default_plan
from hartonomous.config.sections import BillingSettings
from hartonomous.db.connection import libpq_url

PUBLISHER_CORE_ATTRIBUTES = {
    "modality": "image",
    "complexity": "standard",
    "content_type": "knowledge_graph",
    "grounding": "none",
    "guarantee": "standard_sla",
    "provenance": "basic",
    "usage_units": 100,
}


def libpq(url: str) -> str:
    return libpq_url(url)


def test_publisher_core_from_the_database_meters_the_pinned_example(
    engine: Engine, database_url: str
) -> None:
    billing = BillingSettings()
    with engine.begin() as connection:
        seeded = seed_default_plan(connection, billing)
    with psycopg.connect(libpq(database_url), autocommit=True) as conn:
        configuration = load_configuration(conn, "any-tenant", billing)
    assert configuration.rate_plan_id == seeded.rate_plan_id
    record = measure_usage(
        configuration,
        PUBLISHER_CORE_ATTRIBUTES,
        operation="neo4j_sync.inference_completed",
        tenant_id="any-tenant",
    )
    assert record is not None
    assert record.multiplier == Decimal("3.6")
    assert record.total_dcu == Decimal("14.4")
    assert record.total_cost == Decimal("0.001152")


def test_tenant_plan_wins_and_the_cache_expires(engine: Engine, database_url: str) -> None:
    billing = BillingSettings(plan_cache_sliding_seconds=60, plan_cache_absolute_seconds=120)
    with engine.begin() as connection:
        seed_default_plan(connection, billing)
    now = [0.0]
    provider = PlanProvider(billing, clock=lambda: now[0])
    with psycopg.connect(libpq(database_url), autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('vip', 'VIP')")
        assert provider.configuration(conn, "vip").plan_code == "publisher_core"
        plan_id = conn.execute(
            "INSERT INTO billing_rate_plans (tenant_id, plan_code, name, default_rate) "
            "VALUES ('vip', 'vip_plan', 'VIP', 0.5) RETURNING rate_plan_id"
        ).fetchone()
        assert plan_id is not None
        conn.execute(
            "INSERT INTO billing_multipliers (rate_plan_id, dimension, key, multiplier) "
            "VALUES (%s, 'generation', 'image', 9)",
            (plan_id[0],),
        )
        now[0] = 59.0
        assert provider.configuration(conn, "vip").plan_code == "publisher_core"  # cached
        now[0] = 121.0  # past the absolute expiry, though used within the sliding one
        fresh = provider.configuration(conn, "vip")
        assert fresh.plan_code == "vip_plan"
        assert fresh.default_rate == Decimal("0.5")
        assert fresh.generation_multipliers["IMAGE"] == Decimal(9)
        assert provider.configuration(conn, "other").plan_code == "publisher_core"
        conn.execute("UPDATE billing_rate_plans SET is_active = false")
        assert load_configuration(conn, "vip", billing).rate_plan_id is None  # settings
