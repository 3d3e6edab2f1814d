"""The meter of digest §4.4: the original's pinned examples, then the rules one by one."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from hartonomous.billing.configuration import BillingConfiguration, configuration_from_settings
from hartonomous.billing.meter import UsageRecord, measure_usage, metadata_json
from hartonomous.billing.numeric import LedgerValueError
from hartonomous.config.sections import BillingSettings

D = Decimal
PUBLISHER_CORE = configuration_from_settings(BillingSettings())
METADATA_KEYS = {
    "operation",
    "handler",
    "message_type",
    "units",
    "base_rate_dcu",
    "multiplier",
    "unit_price",
    "total_dcu_estimate",
    "total_cost_estimate",
    "rate_plan_id",
    "rate_plan_code",
    "rate_plan_name",
    "allows_private_data",
    "can_query_public_corpus",
    "included_public_storage_gb",
    "included_private_storage_gb",
    "included_seat_count",
}


def enterprise_plan() -> BillingConfiguration:
    return BillingConfiguration(
        rate_plan_id=uuid.UUID("11111111-2222-3333-4444-555555555555"),
        plan_name="Enterprise",
        plan_code="ENT-1",
        default_rate=D("1.1"),
        unit_price_per_dcu=D("0.0025"),
        allows_private_data=True,
        can_query_public_corpus=True,
        included_public_storage_gb=D(1024),
        included_private_storage_gb=D(256),
        included_seat_count=50,
        operation_rates={"ingest": D("2.5")},
        operation_units={"ingest": "thousand_tokens"},
        operation_categories={"ingest": "ai_inference"},
        generation_multipliers={"text": D("1.2")},
        complexity_multipliers={"medium": D("1.4")},
        content_multipliers={"compliance": D("1.3")},
        grounding_multipliers={"private": D("1.1")},
        guarantee_multipliers={"strict": D("1.05")},
        provenance_multipliers={"full": D("1.02")},
    )


def plan(**overrides: object) -> BillingConfiguration:
    values: dict[str, object] = {
        "plan_code": "basic",
        "plan_name": "Basic",
        "default_rate": D(1),
        "unit_price_per_dcu": D("0.00008"),
    }
    values.update(overrides)
    return BillingConfiguration(**values)  # type: ignore[arg-type]


def measure(
    configuration: BillingConfiguration, attributes: dict[str, object], operation: str = "op"
) -> UsageRecord:
    record = measure_usage(configuration, attributes, operation=operation, tenant_id="tenant")
    assert record is not None
    return record


# The original test built these shapes in memory (dictionaries, and JSON elements for
# grounding and guarantee); events arrive here as JSON, so the same document parsed.
PINNED_EVENT_JSON = """{
  "generation": {"modality": "text"},
  "reasoning": {"complexity": 4},
  "content": {"type": "compliance"},
  "grounding": {"grounding_mode": "private"},
  "guarantee": {"model_lock": "strict"},
  "provenance": "full",
  "usage_units": 12.5
}"""


@pytest.mark.parametrize(
    "attributes",
    [
        json.loads(PINNED_EVENT_JSON),
        json.loads(PINNED_EVENT_JSON, parse_float=Decimal),
        {**json.loads(PINNED_EVENT_JSON), "usage_units": "12.5"},
    ],
    ids=["json-float", "json-decimal", "numeric-string"],
)
def test_pinned_totals_and_metadata(attributes: dict[str, object]) -> None:
    record = measure_usage(
        enterprise_plan(),
        attributes,
        operation="ingest",
        tenant_id="tenant-a",
        principal_id="principal-x",
        message_type="atom.ingested",
        handler="IngestionHandler",
    )
    assert record is not None
    expected_multiplier = D("1.2") * D("1.4") * D("1.3") * D("1.1") * D("1.05") * D("1.02")
    assert expected_multiplier == D("2.5729704")
    assert (record.tenant_id, record.principal_id, record.operation) == (
        "tenant-a",
        "principal-x",
        "ingest",
    )
    assert (record.message_type, record.handler) == ("atom.ingested", "IngestionHandler")
    assert record.units == D("12.5")
    assert record.base_rate == D("2.5")
    assert record.multiplier == expected_multiplier  # not rounded
    assert record.total_dcu == D("80.405325")  # 12.5 x 2.5 x 2.5729704 = 80.40532500
    assert record.total_cost == D("0.201013")  # 80.405325 x 0.0025 = 0.2010133125
    metadata = record.metadata
    assert set(metadata) == METADATA_KEYS | {"unit_of_measure", "operation_category"}
    assert metadata["total_dcu_estimate"] == record.total_dcu
    assert metadata["total_cost_estimate"] == record.total_cost
    assert metadata["multiplier"] == expected_multiplier
    assert metadata["base_rate_dcu"] == D("2.5")
    assert metadata["unit_price"] == D("0.0025")
    assert metadata["unit_of_measure"] == "thousand_tokens"
    assert metadata["operation_category"] == "ai_inference"
    assert metadata["rate_plan_name"] == "Enterprise"
    assert metadata["rate_plan_code"] == "ENT-1"
    assert metadata["rate_plan_id"] == "11111111-2222-3333-4444-555555555555"
    assert metadata["included_seat_count"] == 50
    assert metadata["included_public_storage_gb"] == D(1024)
    assert (metadata["allows_private_data"], metadata["can_query_public_corpus"]) == (True, True)
    assert (metadata["operation"], metadata["handler"], metadata["message_type"]) == (
        "ingest",
        "IngestionHandler",
        "atom.ingested",
    )


def test_pinned_token_count_default_rate_and_unit_price_fallback() -> None:
    basic = plan(plan_code="BASIC", default_rate=D("0.5"), unit_price_per_dcu=D(0))
    record = measure(basic, {"token_count": 3200}, operation="summarize")
    assert record.base_rate == D("0.5")
    assert record.units == D("3.2")
    assert record.unit_price == D("0.00008")
    assert record.total_dcu == D("1.6")
    assert record.total_cost == D("0.000128")
    assert set(record.metadata) == METADATA_KEYS  # no unit or category configured
    assert record.metadata["rate_plan_id"] is None


@pytest.mark.parametrize(
    ("tenant", "operation"), [("", "op"), ("tenant", ""), ("  ", "op"), ("tenant", "\t")]
)
def test_pinned_nothing_is_billed_without_tenant_or_operation(tenant: str, operation: str) -> None:
    assert measure_usage(plan(), {}, operation=operation, tenant_id=tenant) is None


def test_pinned_reasoning_complexity_level_and_usage_units() -> None:
    configuration = plan(complexity_multipliers={"large": D("2.5")})
    attributes = json.loads('{"reasoning": {"complexity_level": "large"}, "usage": {"units": 4}}')
    record = measure(configuration, attributes, operation="classify")
    assert record.multiplier == D("2.5")
    assert record.units == D(4)


def test_pinned_duration_seconds() -> None:
    assert measure(plan(), {"duration_seconds": 42}, operation="transcribe").units == D(42)


@pytest.mark.parametrize(
    "attributes",
    [
        {
            "generation": "image",
            "complexity": "standard",
            "content_type": "knowledge_graph",
            "grounding": "none",
            "guarantee": "standard_sla",
            "provenance": "basic",
            "usage_units": 100,
        },
        {
            "generation": {"type": "image"},
            "reasoning": {"complexity_level": {"name": "standard"}},
            "content": {"value": "knowledge_graph"},
            "request": {"grounding_mode": "none", "policy": {"version_policy": "standard_sla"}},
            "audit": {"code": "basic"},
            "usage": {"units": "100"},
        },
    ],
    ids=["top-level", "nested"],
)
def test_pinned_publisher_core(attributes: dict[str, object]) -> None:
    record = measure(PUBLISHER_CORE, attributes, operation="neo4j_sync.inference_completed")
    assert record.base_rate == D("0.04")
    assert record.multiplier == D("3.6")
    assert record.units == D(100)
    assert record.total_dcu == D("14.4")
    assert record.total_cost == D("0.001152")
    assert record.metadata["unit_of_measure"] == "dcu"
    assert record.metadata["operation_category"] == "generation"
    assert record.metadata["rate_plan_code"] == "publisher_core"


def test_unknown_operation_bills_at_the_default_rate() -> None:
    record = measure(PUBLISHER_CORE, {}, operation="com.example.cdc.insert")
    assert record.base_rate == D("0.0105")
    assert (record.units, record.multiplier, record.total_dcu) == (D(1), D(1), D("0.0105"))


def test_operation_and_multiplier_keys_ignore_case() -> None:
    record = measure(
        PUBLISHER_CORE,
        {"generation": "IMAGE", "provenance": "Audit_Trail"},
        operation="NEO4J_SYNC.Inference_Completed",
    )
    assert record.base_rate == D("0.04")
    assert record.multiplier == D("3.75")
    assert record.metadata["operation_category"] == "generation"


def test_attribute_keys_are_case_sensitive() -> None:
    assert measure(PUBLISHER_CORE, {"Generation": "image"}).multiplier == D(1)


generation_plan = plan(generation_multipliers={"image": D(3), "audio": D(2), "video": D(5)})


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        # The first string found decides: a miss is 1 even though a later key would match.
        ({"generation": "hologram", "modality": "image"}, D(1)),
        # Keys are tried in order at one level before any nested object is searched.
        ({"meta": {"generation": "audio"}, "modality": "image"}, D(3)),
        # A top-level object that is not a string-like object is searched as nested.
        ({"generation": {"modality": "video"}}, D(5)),
        # String-like objects: value, name, code, id, type, in that priority.
        ({"generation": {"type": "audio", "value": "image"}}, D(3)),
        ({"generation": {"value": {"name": "video"}}}, D(5)),
        ({"generation": {"value": "  ", "code": "audio"}}, D(2)),
        ({"generation": {"value": 7, "id": "audio"}}, D(2)),
        # Blank strings, numbers, booleans, null and lists are not strings; lists are not searched.
        ({"generation": "", "modality": "image"}, D(3)),
        ({"generation": 3, "modality": "audio"}, D(2)),
        ({"generation": ["image"]}, D(1)),
        ({"items": [{"modality": "image"}]}, D(1)),
        ({"generation": None, "x": True}, D(1)),
        # Nested objects are searched depth-first in insertion order.
        ({"a": {"b": {"modality": "audio"}}, "c": {"modality": "image"}}, D(2)),
    ],
)
def test_dimension_resolution(attributes: dict[str, object], expected: Decimal) -> None:
    assert measure(generation_plan, attributes).multiplier == expected


def nested(levels: int, leaf: dict[str, object]) -> dict[str, object]:
    document = leaf
    for level in range(levels):
        document = {f"level{level}": document}
    return document


def test_search_reaches_four_nested_levels_and_no_further() -> None:
    assert measure(generation_plan, nested(4, {"modality": "image"})).multiplier == D(3)
    assert measure(generation_plan, nested(5, {"modality": "image"})).multiplier == D(1)


def test_deeply_nested_string_objects_resolve_without_recursion_limits() -> None:
    value: object = "video"
    for _ in range(5000):
        value = {"value": value}
    assert measure(generation_plan, {"generation": value}).multiplier == D(5)


def test_an_empty_table_is_one_without_searching() -> None:
    assert measure(plan(), {"generation": "image", "complexity": 9}).multiplier == D(1)


complexity_plan = plan(
    complexity_multipliers={
        "standard": D(1),
        "premium": D("1.5"),
        "distilled": D("0.5"),
        "small": D("0.8"),
        "medium": D("1.4"),
        "large": D("2.5"),
    }
)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"complexity": 1}, D("0.5")),
        ({"complexity": -3}, D("0.5")),
        ({"complexity": 1.0001}, D("0.8")),
        ({"complexity": "3"}, D("0.8")),
        ({"complexity": 6}, D("1.4")),
        ({"complexity": 6.5}, D("2.5")),
        ({"reasoning": {"complexity": 4}}, D("1.4")),
        ({"reasoning": {"complexity": "7"}}, D("2.5")),
        # A named level wins over the numeric score when its multiplier is not 1 ...
        ({"complexity": "premium", "reasoning": {"complexity": 9}}, D("1.5")),
        # ... but a level configured as exactly 1 falls back to the score, as the original did.
        ({"complexity": "standard", "reasoning": {"complexity": 9}}, D("2.5")),
        # The top-level number comes before reasoning.complexity.
        ({"complexity": 2, "reasoning": {"complexity": 9}}, D("0.8")),
        # The string search finds a nested level first, so the score is not consulted.
        ({"reasoning": {"complexity": 9, "complexity_level": "distilled"}}, D("0.5")),
        # A level the table lacks gives 1, then the fallback reads the score.
        ({"reasoning": {"complexity": 9, "complexity_level": "huge"}}, D("2.5")),
        ({"reasoning": {"complexity_level": {"value": "SMALL"}}}, D("0.8")),
        ({"reasoning": {"complexity_level": "huge"}}, D(1)),
        ({"reasoning": "deep"}, D(1)),
    ],
)
def test_complexity_fallback(attributes: dict[str, object], expected: Decimal) -> None:
    assert measure(complexity_plan, attributes).multiplier == expected


def test_numeric_category_missing_from_the_table_is_one() -> None:
    configuration = plan(complexity_multipliers={"premium": D(2)})
    assert measure(configuration, {"complexity": 9}).multiplier == D(1)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"usage_units": 5, "usage": {"units": 6}, "token_count": 7000}, D(5)),
        ({"usage_units": 0, "usage": {"units": 6}}, D(6)),
        ({"usage_units": -2, "usage": {"units": "0"}, "token_count": 2500}, D("2.5")),
        ({"usage": {"units": None}, "token_count": "1500"}, D("1.5")),
        ({"usage": [6], "token_count": -1, "duration_seconds": 0.25}, D("0.25")),
        ({"usage_units": True, "duration_seconds": False}, D(1)),
        ({"usage_units": "five"}, D(1)),
        ({"usage_units": 0.1}, D("0.1")),  # via str(), not the binary value of 0.1
        ({}, D(1)),
    ],
)
def test_units_precedence(attributes: dict[str, object], expected: Decimal) -> None:
    assert measure(plan(), attributes).units == expected


@pytest.mark.parametrize(
    ("units", "unit_price", "total_dcu", "total_cost"),
    [
        # DCU ties round away from zero (half-even would give 0.000002).
        ("0.0000025", "0.5", "0.000003", "0.000002"),
        ("0.0000035", "0.5", "0.000004", "0.000002"),
        ("0.00000249", "0.5", "0.000002", "0.000001"),
        # Cost is rounded from the rounded DCU: 3 x 0.0000005 = 0.0000015 -> 0.000002.
        ("3", "0.0000005", "3", "0.000002"),
        ("1", "0.0000005", "1", "0.000001"),
    ],
)
def test_totals_round_half_away_from_zero(
    units: str, unit_price: str, total_dcu: str, total_cost: str
) -> None:
    record = measure(plan(unit_price_per_dcu=D(unit_price)), {"usage_units": units})
    assert record.total_dcu == D(total_dcu)
    assert record.total_cost == D(total_cost)


def test_ledger_amounts_round_the_multiplier_to_the_column() -> None:
    record = measure(enterprise_plan(), json.loads(PINNED_EVENT_JSON), operation="ingest")
    amounts = record.ledger_amounts()
    assert amounts.multiplier == D("2.572970")
    assert record.multiplier == D("2.5729704")  # DCU came from the exact product
    assert amounts.total_dcu == record.total_dcu
    assert amounts.units == D("12.500000")


def test_ledger_amounts_refuse_values_beyond_numeric_18_6() -> None:
    record = measure(plan(), {"usage_units": "1000000000000"})
    with pytest.raises(LedgerValueError, match=r"units 1000000000000 does not fit NUMERIC\(18,6\)"):
        record.ledger_amounts()


def test_metadata_json_keeps_decimals_exact() -> None:
    record = measure(enterprise_plan(), json.loads(PINNED_EVENT_JSON), operation="ingest")
    text = metadata_json(record.metadata)
    assert '"multiplier":2.5729704' in text
    assert json.loads(text, parse_float=Decimal) == dict(record.metadata)
    assert metadata_json({"n": D("1E+2"), "none": None}) == '{"n":100,"none":null}'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.0105", "0.0105"),
        ("0.000001", "0.000001"),
        ("-0.000000", "-0.000000"),
        ("1E-7", "0.0000001"),
        ("0E-9", "0.000000000"),
        ("1.5E+3", "1500"),
        ("12345678901234567890.123456", "12345678901234567890.123456"),
    ],
)
def test_metadata_json_writes_every_decimal_in_fixed_point(value: str, text: str) -> None:
    assert metadata_json({"n": D(value)}) == '{"n":' + text + "}"


def test_extra_metadata_follows_the_meters_keys_and_replaces_none() -> None:
    record = measure_usage(
        plan(),
        {"usage_units": "2"},
        operation="ingest",
        tenant_id="acme",
        extra_metadata={"cloudevent_id": "e-1", "units": "forged", "operation": "other"},
    )
    assert record is not None
    keys = list(record.metadata)
    assert keys[-1] == "cloudevent_id"
    assert record.metadata["cloudevent_id"] == "e-1"
    assert record.metadata["units"] == D(2)
    assert record.metadata["operation"] == "ingest"
