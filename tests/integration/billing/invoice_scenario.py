"""A seeded billing scenario for October 2026: a global plan whose second version takes effect
mid-month, usage priced by the real meter with the version in force at each event's time,
holdings of composite and leaf atoms (one shared with another tenant), and principals."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, insert, text

from hartonomous.billing.meter import measure_usage, metadata_json
from hartonomous.billing.plan_provider import load_configuration
from hartonomous.billing.plan_versions import (
    OperationRate,
    PlanMultiplier,
    PlanVersion,
    write_version,
)
from hartonomous.config.sections import BillingSettings
from hartonomous.db.tables import (
    atom_components,
    atoms,
    holdings,
)
from hartonomous.messaging.broker import psycopg_connection
from hartonomous.security import ensure_tenant
from hartonomous.security.principals import ensure_principal

PERIOD = "2026-10"
SWITCH = datetime(2026, 10, 16, tzinfo=UTC)  # version 2 takes effect
API_CALL = "usage.api_call"
INGEST = "neo4j_sync.ingest_completed"

FIRST = PlanVersion(
    tenant_id=None,
    plan_code="standard",
    name="Standard",
    monthly_fee=Decimal("49.99"),
    default_rate=Decimal("0.01"),
    unit_price_per_dcu=Decimal("0.0125"),
    storage_price_per_gb_month=Decimal("0.25"),
    seat_price=Decimal("12.5"),
    included_private_storage_gb=Decimal("1"),
    included_public_storage_gb=Decimal("0.5"),
    included_seat_count=2,
    rates=(
        OperationRate(API_CALL, Decimal("0.02"), "call", "api"),
        OperationRate(INGEST, Decimal("0.018"), "file", "ingestion"),
    ),
    multipliers=(PlanMultiplier("generation", "image", Decimal("3")),),
)
# Version 2: the api call costs more, the fee rises; the rest is as in version 1.
SECOND = PlanVersion(
    **{
        **FIRST.__dict__,
        "monthly_fee": Decimal("59.99"),
        "rates": (
            OperationRate(API_CALL, Decimal("0.03"), "call", "api"),
            OperationRate(INGEST, Decimal("0.018"), "file", "ingestion"),
        ),
    }
)

# (tenant, day of October, hour, operation, attributes)
EVENTS: tuple[tuple[str, int, int, str, dict[str, object]], ...] = (
    ("acme", 2, 9, API_CALL, {"usage_units": "1234.5"}),
    ("acme", 3, 10, API_CALL, {"usage_units": "10", "generation": "image"}),
    ("acme", 9, 11, INGEST, {"usage_units": "3"}),
    ("acme", 15, 23, API_CALL, {"usage_units": "0.5"}),
    ("acme", 16, 0, API_CALL, {"usage_units": "1234.5"}),
    ("acme", 20, 8, API_CALL, {"usage_units": "7", "generation": "image"}),
    ("acme", 28, 17, INGEST, {"usage_units": "12"}),
    ("acme", 31, 23, "usage.unpriced", {"token_count": 2500}),
    ("globex", 5, 12, API_CALL, {"usage_units": "99"}),
)

GB = 10**9
LEAF_BIG = hashlib.sha256(b"leaf-big").digest()
LEAF_SMALL = hashlib.sha256(b"leaf-small").digest()
COMPOSITE = hashlib.sha256(b"composite").digest()


def seed(engine: Engine, billing: BillingSettings) -> None:
    with engine.begin() as connection:
        for tenant in ("acme", "globex"):
            ensure_tenant(connection, tenant, tenant.title())
        for principal, active in (("ann", True), ("bob", True), ("cy", True), ("dee", False)):
            ensure_principal(connection, "acme", principal, principal, "user")
            if not active:
                connection.exec_driver_sql(
                    "UPDATE principals SET is_active = false WHERE principal_id = %(p)s",
                    {"p": principal},
                )
        write_version(connection, FIRST, datetime(2026, 9, 1, tzinfo=UTC))
        write_version(connection, SECOND, SWITCH)
        _seed_holdings(connection)
    _seed_usage(engine, billing)


def _seed_holdings(connection: Connection) -> None:
    connection.execute(
        insert(atoms),
        [
            _atom(LEAF_BIG, "leaf", 3 * GB // 2),
            _atom(LEAF_SMALL, "leaf", 3 * GB // 4),
            _atom(COMPOSITE, "composite", 3 * GB),
        ],
    )
    connection.execute(
        insert(atom_components),
        [
            {"parent_atom_id": COMPOSITE, "ordinal": 0, "child_atom_id": LEAF_BIG, "repeat": 1},
            {"parent_atom_id": COMPOSITE, "ordinal": 1, "child_atom_id": LEAF_SMALL, "repeat": 2},
        ],
    )
    connection.execute(
        insert(holdings),
        [
            # The whole month: the composite reaches both leaves (2.25 GB, each leaf once).
            _holding("acme", COMPOSITE, "private", datetime(2026, 9, 20, tzinfo=UTC)),
            # The leaf again, privately: reached already, counted once.
            _holding("acme", LEAF_SMALL, "private", datetime(2026, 10, 3, tzinfo=UTC)),
            # From the 16th: 16 of 31 days of 0.75 GB, public.
            _holding("acme", LEAF_SMALL, "public", SWITCH),
            # After the period: not in October's storage.
            _holding("acme", LEAF_BIG, "public", datetime(2026, 11, 2, tzinfo=UTC)),
            # Shared bytes count for each holder.
            _holding("globex", LEAF_BIG, "private", datetime(2026, 10, 1, tzinfo=UTC)),
        ],
    )


def _atom(atom_id: bytes, kind: str, size: int) -> dict[str, object]:
    return {"atom_id": atom_id, "kind": kind, "modality": "binary", "size_bytes": size}


def _holding(tenant: str, atom: bytes, visibility: str, at: datetime) -> dict[str, object]:
    return {
        "tenant_id": tenant,
        "atom_id": atom,
        "source_uri": f"file:///{tenant}/{visibility}/{atom.hex()[:8]}",
        "source_type": "file",
        "visibility": visibility,
        "created_at": at,
    }


def _seed_usage(engine: Engine, billing: BillingSettings) -> None:
    rows = []
    with engine.connect() as connection:
        session = psycopg_connection(connection)
        for index, (tenant, day, hour, operation, attributes) in enumerate(EVENTS):
            at = datetime(2026, 10, day, hour, tzinfo=UTC)
            plan = load_configuration(session, tenant, billing, at)
            record = measure_usage(plan, attributes, operation=operation, tenant_id=tenant)
            assert record is not None
            amounts = record.ledger_amounts()
            rows.append(
                {
                    "event_id": f"scenario-{index}",
                    "tenant_id": tenant,
                    "principal_id": "ann",
                    "operation": operation,
                    "message_type": "usage",
                    "handler": "scenario",
                    **amounts.__dict__,
                    "rate_plan_id": plan.rate_plan_id,
                    "metadata": metadata_json(record.metadata),
                    "recorded_at": at,
                    "billing_period": at.date().replace(day=1),
                }
            )
        session.rollback()
    columns = list(rows[0])
    values = ", ".join(
        "CAST(:metadata AS json)" if name == "metadata" else f":{name}" for name in columns
    )
    with engine.begin() as connection:
        connection.execute(
            text(f"INSERT INTO billing_usage_ledger ({', '.join(columns)}) VALUES ({values})"),
            rows,
        )
