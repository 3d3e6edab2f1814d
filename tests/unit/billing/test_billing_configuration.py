"""The plan the meter is given: settings fallback and case-insensitive tables."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from hartonomous.billing.configuration import BillingConfiguration, configuration_from_settings
from hartonomous.config.sections import BillingSettings

D = Decimal


def test_settings_defaults_are_publisher_core() -> None:
    configuration = configuration_from_settings(BillingSettings())
    assert configuration.rate_plan_id is None
    assert (configuration.plan_code, configuration.plan_name) == (
        "publisher_core",
        "Publisher Core",
    )
    assert configuration.default_rate == D("0.0105")
    assert configuration.unit_price_per_dcu == D("0.00008")
    assert configuration.included_public_storage_gb == D(120)
    assert configuration.included_private_storage_gb == D(40)
    assert configuration.included_seat_count == 25
    assert configuration.allows_private_data
    assert configuration.can_query_public_corpus
    assert configuration.operation_rates["neo4j_sync.model_updated"] == D("0.025")
    assert configuration.operation_units["neo4j_sync.ingest_completed"] == "dcu"
    assert configuration.operation_categories["neo4j_sync.inference_completed"] == "generation"
    assert dict(configuration.generation_multipliers) == {
        "text": D("1.0"),
        "image": D("3.0"),
        "audio": D("2.2"),
        "video": D("3.8"),
    }
    assert configuration.complexity_multipliers["enterprise"] == D("2.0")
    assert configuration.content_multipliers["spatial"] == D("1.6")
    assert configuration.grounding_multipliers["private_vector_index"] == D("1.55")
    assert configuration.guarantee_multipliers["premium_sla"] == D("1.35")
    assert configuration.provenance_multipliers["immutable_ledger"] == D("1.5")


def test_settings_overrides_are_carried() -> None:
    billing = BillingSettings.model_validate(
        {
            "default_plan_code": "publisher_sandbox",
            "default_rate": "0.0075",
            "multipliers": {"generation": {"image": "2.5"}},
        }
    )
    configuration = configuration_from_settings(billing)
    assert configuration.plan_code == "publisher_sandbox"
    assert configuration.default_rate == D("0.0075")
    assert dict(configuration.generation_multipliers) == {"image": D("2.5")}


def test_tables_ignore_case_and_keep_configured_keys() -> None:
    configuration = BillingConfiguration(
        plan_code="p",
        plan_name="P",
        default_rate=D(1),
        unit_price_per_dcu=D(1),
        operation_rates={"Ingest.Done": D(2)},
    )
    assert configuration.operation_rates["ingest.done"] == D(2)
    assert "INGEST.DONE" in configuration.operation_rates
    not_a_string: object = 3
    assert not_a_string not in configuration.operation_rates
    assert list(configuration.operation_rates) == ["Ingest.Done"]


def test_keys_differing_only_in_case_are_refused() -> None:
    with pytest.raises(ValueError, match=r"generation_multipliers: keys 'image' and 'IMAGE'"):
        BillingConfiguration(
            plan_code="p",
            plan_name="P",
            default_rate=D(1),
            unit_price_per_dcu=D(1),
            generation_multipliers={"image": D(2), "IMAGE": D(3)},
        )


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("default_rate", 0.5, "default_rate"),
        ("unit_price_per_dcu", D("NaN"), "unit_price_per_dcu"),
        ("operation_rates", {"op": 0.5}, "operation_rates['op']"),
        ("provenance_multipliers", {"basic": 1}, "provenance_multipliers['basic']"),
    ],
)
def test_floats_and_non_finite_amounts_are_refused(field: str, value: object, named: str) -> None:
    values: dict[str, object] = {
        "plan_code": "p",
        "plan_name": "P",
        "default_rate": D(1),
        "unit_price_per_dcu": D(1),
        field: value,
    }
    with pytest.raises(TypeError, match=re.escape(f"{named} must be a finite Decimal")):
        BillingConfiguration(**values)  # type: ignore[arg-type]
