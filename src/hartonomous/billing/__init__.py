"""Billing: the rate-plan catalogue (and later the meter, ledger and reports)."""

from hartonomous.billing.plans import PlanSeedResult, SeedStatus, seed_default_plan

__all__ = ["PlanSeedResult", "SeedStatus", "seed_default_plan"]
