"""`db seed`: reference data every installation starts with. Running it twice changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from hartonomous.billing import PlanSeedResult, seed_default_plan
from hartonomous.config import Settings
from hartonomous.security import create_api_key, ensure_principal, ensure_tenant
from hartonomous.security.roles import Role

SAMPLE_TENANT_ID = "sample"
SAMPLE_PRINCIPAL_ID = "sample-admin"


@dataclass(frozen=True)
class SeedReport:
    plan: PlanSeedResult
    sample_tenant_created: bool
    sample_principal_created: bool
    # Present only on the run that created the principal: it is never stored or shown again.
    sample_api_key: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "rate_plan": {
                "status": self.plan.status.value,
                "plan_code": self.plan.plan_code,
                "rate_plan_id": str(self.plan.rate_plan_id),
            },
            "sample_tenant": {
                "tenant_id": SAMPLE_TENANT_ID,
                "status": "created" if self.sample_tenant_created else "unchanged",
            },
            "sample_principal": {
                "principal_id": SAMPLE_PRINCIPAL_ID,
                "status": "created" if self.sample_principal_created else "unchanged",
                "api_key": self.sample_api_key,
            },
        }


def seed(engine: Engine, settings: Settings, *, update_plan: bool = False) -> SeedReport:
    with engine.begin() as connection:
        plan = seed_default_plan(connection, settings.billing, update_existing=update_plan)
        tenant_created = ensure_tenant(connection, SAMPLE_TENANT_ID, "Sample tenant")
        principal_created = ensure_principal(
            connection,
            SAMPLE_TENANT_ID,
            SAMPLE_PRINCIPAL_ID,
            "Sample administrator",
            "user",
            role=Role.ADMIN,  # its key, printed by `up`, can administer the platform
        )
        api_key = (
            create_api_key(connection, SAMPLE_TENANT_ID, SAMPLE_PRINCIPAL_ID, "seeded")
            if principal_created
            else None
        )
    return SeedReport(plan, tenant_created, principal_created, api_key)
