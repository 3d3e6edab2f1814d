"""The usage meter (docs/billing.md): one event's attributes and a plan → one ledger record.

Pure: no database, no clock. Every figure is Decimal; the only rounding is of the DCU total
and the cost (6 places, half away from zero). The multiplier is kept exact, as the original
kept it: DCU is computed from the exact product, the metadata carries the exact product, and
`UsageRecord.ledger_amounts()` rounds it to 6 places only to fit the NUMERIC(18,6) column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _quote

from hartonomous.billing.attributes import find_string, nested_number, resolve_string, to_decimal
from hartonomous.billing.configuration import BillingConfiguration
from hartonomous.billing.numeric import exact_product, round_half_away, to_ledger_numeric

DEFAULT_UNIT_PRICE = Decimal("0.00008")
_ONE = Decimal(1)
_PER_THOUSAND = Decimal("0.001")

# Attribute keys each multiplier dimension reads, in the order they are tried.
GENERATION_KEYS = ("generation", "generation_type", "modality")
COMPLEXITY_KEYS = ("complexity", "complexity_level")
CONTENT_KEYS = ("content_type", "content", "dataset_type")
GROUNDING_KEYS = ("grounding", "grounding_mode", "context_mode", "contextuality")
GUARANTEE_KEYS = ("guarantee", "guarantee_mode", "model_lock", "version_policy")
PROVENANCE_KEYS = ("provenance", "audit_mode", "audit")

MetadataValue = str | bool | int | Decimal | None


@dataclass(frozen=True)
class LedgerAmounts:
    """The record's figures as NUMERIC(18,6) column values."""

    units: Decimal
    base_rate: Decimal
    multiplier: Decimal
    unit_price: Decimal
    total_dcu: Decimal
    total_cost: Decimal


@dataclass(frozen=True)
class UsageRecord:
    """What one event costs. `multiplier` and `units` are exact; totals are rounded to 6."""

    tenant_id: str
    principal_id: str
    operation: str
    message_type: str
    handler: str
    units: Decimal
    base_rate: Decimal
    multiplier: Decimal
    unit_price: Decimal
    total_dcu: Decimal
    total_cost: Decimal
    metadata: Mapping[str, MetadataValue]

    def ledger_amounts(self) -> LedgerAmounts:
        """Figures for the ledger columns; raises `LedgerValueError` when one cannot fit."""
        return LedgerAmounts(
            units=to_ledger_numeric(self.units, "units"),
            base_rate=to_ledger_numeric(self.base_rate, "base_rate"),
            multiplier=to_ledger_numeric(self.multiplier, "multiplier"),
            unit_price=to_ledger_numeric(self.unit_price, "unit_price"),
            total_dcu=to_ledger_numeric(self.total_dcu, "total_dcu"),
            total_cost=to_ledger_numeric(self.total_cost, "total_cost"),
        )


def measure_usage(
    configuration: BillingConfiguration,
    attributes: Mapping[str, object],
    *,
    operation: str,
    tenant_id: str,
    principal_id: str = "",
    message_type: str = "",
    handler: str = "",
    extra_metadata: Mapping[str, MetadataValue] | None = None,
) -> UsageRecord | None:
    """Meter one event; None (nothing billed) when the tenant or the operation is blank.

    ``extra_metadata`` (the caller's, such as a usage event's CloudEvent id) is added to the
    record's metadata after the meter's own keys, replacing none of them."""
    if not operation.strip() or not tenant_id.strip():
        return None
    base_rate = configuration.operation_rates.get(operation, configuration.default_rate)
    multiplier = resolve_multiplier(configuration, attributes)
    units = resolve_units(attributes)
    unit_price = (
        configuration.unit_price_per_dcu
        if configuration.unit_price_per_dcu > 0
        else DEFAULT_UNIT_PRICE
    )
    total_dcu = round_half_away(exact_product(units, base_rate, multiplier))
    total_cost = round_half_away(exact_product(total_dcu, unit_price))

    metadata: dict[str, MetadataValue] = {
        "operation": operation,
        "handler": handler,
        "message_type": message_type,
        "units": units,
        "base_rate_dcu": base_rate,
        "multiplier": multiplier,
        "unit_price": unit_price,
        "total_dcu_estimate": total_dcu,
        "total_cost_estimate": total_cost,
        "rate_plan_id": (
            str(configuration.rate_plan_id) if configuration.rate_plan_id is not None else None
        ),
        "rate_plan_code": configuration.plan_code,
        "rate_plan_name": configuration.plan_name,
        "allows_private_data": configuration.allows_private_data,
        "can_query_public_corpus": configuration.can_query_public_corpus,
        "included_public_storage_gb": configuration.included_public_storage_gb,
        "included_private_storage_gb": configuration.included_private_storage_gb,
        "included_seat_count": configuration.included_seat_count,
    }
    unit_of_measure = configuration.operation_units.get(operation)
    if unit_of_measure and unit_of_measure.strip():
        metadata["unit_of_measure"] = unit_of_measure
    category = configuration.operation_categories.get(operation)
    if category and category.strip():
        metadata["operation_category"] = category
    if extra_metadata:
        metadata.update(
            (key, value) for key, value in extra_metadata.items() if key not in metadata
        )

    return UsageRecord(
        tenant_id=tenant_id,
        principal_id=principal_id,
        operation=operation,
        message_type=message_type,
        handler=handler,
        units=units,
        base_rate=base_rate,
        multiplier=multiplier,
        unit_price=unit_price,
        total_dcu=total_dcu,
        total_cost=total_cost,
        metadata=metadata,
    )


# Every key a dimension reads at the top level of the attributes (the complexity score's too).
_DIMENSION_KEYS = frozenset(
    (
        *GENERATION_KEYS,
        *COMPLEXITY_KEYS,
        *CONTENT_KEYS,
        *GROUNDING_KEYS,
        *GUARANTEE_KEYS,
        *PROVENANCE_KEYS,
        "reasoning",
    )
)


def resolve_multiplier(
    configuration: BillingConfiguration, attributes: Mapping[str, object]
) -> Decimal:
    """The exact product of the six dimensions; an unresolved dimension counts 1."""
    if attributes.keys().isdisjoint(_DIMENSION_KEYS) and not any(
        isinstance(value, Mapping) for value in attributes.values()
    ):
        # No dimension can resolve (none of their keys, nothing nested to search): every one
        # counts 1. Most events (a usage event's `units`, an ingested file) take this path.
        return _ONE
    return exact_product(
        _dimension(configuration.generation_multipliers, attributes, GENERATION_KEYS),
        _complexity(configuration.complexity_multipliers, attributes),
        _dimension(configuration.content_multipliers, attributes, CONTENT_KEYS),
        _dimension(configuration.grounding_multipliers, attributes, GROUNDING_KEYS),
        _dimension(configuration.guarantee_multipliers, attributes, GUARANTEE_KEYS),
        _dimension(configuration.provenance_multipliers, attributes, PROVENANCE_KEYS),
    )


def _dimension(
    table: Mapping[str, Decimal], attributes: Mapping[str, object], keys: tuple[str, ...]
) -> Decimal:
    if not table:
        return _ONE
    found = find_string(attributes, keys)
    # The first string found decides: a miss is 1, other keys are not tried.
    return table.get(found, _ONE) if found is not None else _ONE


def _complexity(table: Mapping[str, Decimal], attributes: Mapping[str, object]) -> Decimal:
    by_name = _dimension(table, attributes, COMPLEXITY_KEYS)
    # The original fell back to the numeric score whenever the lookup gave exactly 1, which
    # includes a named level that is configured as 1 (e.g. "standard").
    if by_name != _ONE:
        return by_name
    category = complexity_category(attributes)
    if category is not None and category in table:
        return table[category]
    return _ONE


def complexity_category(attributes: Mapping[str, object]) -> str | None:
    """`complexity` or `reasoning.complexity` as a size class, else `reasoning.complexity_level`."""
    score = to_decimal(attributes.get("complexity"))
    reasoning = attributes.get("reasoning")
    if score is None:
        score = nested_number(reasoning, "complexity")
    if score is not None:
        return _categorize(score)
    if isinstance(reasoning, Mapping) and "complexity_level" in reasoning:
        return resolve_string(reasoning["complexity_level"])
    return None


def _categorize(score: Decimal) -> str:
    if score <= 1:
        return "distilled"
    if score <= 3:
        return "small"
    if score <= 6:
        return "medium"
    return "large"


def resolve_units(attributes: Mapping[str, object]) -> Decimal:
    """usage_units, usage.units, token_count / 1000, duration_seconds (first > 0), else 1."""
    usage_units = to_decimal(attributes.get("usage_units"))
    if usage_units is not None and usage_units > 0:
        return usage_units
    nested_units = nested_number(attributes.get("usage"), "units")
    if nested_units is not None and nested_units > 0:
        return nested_units
    tokens = to_decimal(attributes.get("token_count"))
    if tokens is not None and tokens > 0:
        return exact_product(tokens, _PER_THOUSAND)
    seconds = to_decimal(attributes.get("duration_seconds"))
    if seconds is not None and seconds > 0:
        return seconds
    return _ONE


# Each key's JSON text and colon: every ledger row's metadata repeats the same few keys.
# Bounded, since metadata written by other callers may bring any keys.
_KEY_TEXT: dict[str, str] = {}
_KEY_TEXT_LIMIT = 1024


def metadata_json(metadata: Mapping[str, MetadataValue]) -> str:
    """The metadata as a JSON object with Decimals written as exact JSON numbers (the text
    `json.dumps` writes for the other values: ASCII, compact)."""
    members = [
        (_KEY_TEXT.get(key) or _key_text(key)) + _json_value(value)
        for key, value in metadata.items()
    ]
    return "{" + ",".join(members) + "}"


def _key_text(key: str) -> str:
    text = _quote(key) + ":"
    if len(_KEY_TEXT) < _KEY_TEXT_LIMIT:
        _KEY_TEXT[key] = text
    return text


def _json_value(value: MetadataValue) -> str:
    # Dispatch by type (the hot path of every ledger row), as `json.dumps` would write each.
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, Decimal):
        # Fixed-point text: exact, and never an exponent form such as 1E+2. `str` writes the
        # same text, in two thirds of the time, whenever it writes no exponent (most values).
        text = str(value)
        return text if "E" not in text else format(value, "f")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return int.__repr__(value)
