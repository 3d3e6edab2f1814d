"""The billing configuration one measurement uses (docs/billing.md), as plain values.

The meter never reads the database or settings: callers resolve the tenant's plan (from the
rate-plan tables, or from `[billing]` settings via `configuration_from_settings`) and pass it in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from hartonomous.config.sections import BillingSettings

V = TypeVar("V")


class CaseInsensitiveTable(Mapping[str, V]):
    """A read-only mapping whose lookups ignore case (the original's OrdinalIgnoreCase tables).

    Iteration yields the keys as configured. Two keys that differ only in case are refused,
    as the original's dictionaries refused duplicate keys.
    """

    __slots__ = ("_entries",)

    def __init__(self, entries: Mapping[str, V], *, name: str) -> None:
        folded: dict[str, tuple[str, V]] = {}
        for key, value in entries.items():
            previous = folded.get(key.casefold())
            if previous is not None:
                raise ValueError(f"{name}: keys {previous[0]!r} and {key!r} differ only in case")
            folded[key.casefold()] = (key, value)
        self._entries = folded

    def __getitem__(self, key: str) -> V:
        return self._entries[key.casefold()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.casefold() in self._entries

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"CaseInsensitiveTable({dict(self.items())!r})"


def _table(entries: Mapping[str, V], name: str) -> CaseInsensitiveTable[V]:
    return CaseInsensitiveTable(entries, name=name)


_MULTIPLIER_FIELDS = (
    "generation_multipliers",
    "complexity_multipliers",
    "content_multipliers",
    "grounding_multipliers",
    "guarantee_multipliers",
    "provenance_multipliers",
)
_TABLE_FIELDS = ("operation_rates", "operation_units", "operation_categories", *_MULTIPLIER_FIELDS)


@dataclass(frozen=True)
class BillingConfiguration:
    """One tenant's plan: rates, entitlements and the six multiplier tables.

    Mapping fields may be given as plain dicts; they are stored as case-insensitive tables.
    Money and multipliers are Decimal.
    """

    plan_code: str
    plan_name: str
    default_rate: Decimal
    unit_price_per_dcu: Decimal
    rate_plan_id: uuid.UUID | None = None
    allows_private_data: bool = False
    can_query_public_corpus: bool = False
    included_public_storage_gb: Decimal = Decimal(0)
    included_private_storage_gb: Decimal = Decimal(0)
    included_seat_count: int = 1
    operation_rates: Mapping[str, Decimal] = field(default_factory=dict)
    operation_units: Mapping[str, str] = field(default_factory=dict)
    operation_categories: Mapping[str, str] = field(default_factory=dict)
    generation_multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    complexity_multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    content_multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    grounding_multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    guarantee_multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    provenance_multipliers: Mapping[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _TABLE_FIELDS:
            # Frozen dataclass: normalising a field in __post_init__ needs object.__setattr__.
            object.__setattr__(self, name, _table(getattr(self, name), name))
        # A float here would bring binary rounding into money; refuse it at the boundary.
        amounts: list[tuple[str, object]] = [
            (name, getattr(self, name))
            for name in (
                "default_rate",
                "unit_price_per_dcu",
                "included_public_storage_gb",
                "included_private_storage_gb",
            )
        ]
        for name in ("operation_rates", *_MULTIPLIER_FIELDS):
            table: Mapping[str, object] = getattr(self, name)
            amounts.extend((f"{name}[{key!r}]", value) for key, value in table.items())
        for name, value in amounts:
            if not isinstance(value, Decimal) or not value.is_finite():
                raise TypeError(f"{name} must be a finite Decimal, not {value!r}")


def configuration_from_settings(billing: BillingSettings) -> BillingConfiguration:
    """The `[billing]` default plan (no rate plan id), the fallback when no plan row applies."""
    tables = billing.multipliers
    return BillingConfiguration(
        rate_plan_id=None,
        plan_code=billing.default_plan_code,
        plan_name=billing.default_plan_name,
        default_rate=billing.default_rate,
        unit_price_per_dcu=billing.unit_price_per_dcu,
        allows_private_data=billing.default_allows_private_data,
        can_query_public_corpus=billing.default_can_query_public_corpus,
        included_public_storage_gb=billing.default_included_public_storage_gb,
        included_private_storage_gb=billing.default_included_private_storage_gb,
        included_seat_count=billing.default_included_seat_count,
        operation_rates=billing.operation_rates,
        operation_units=billing.operation_units,
        operation_categories=billing.operation_categories,
        generation_multipliers=tables.generation,
        complexity_multipliers=tables.complexity,
        content_multipliers=tables.content,
        grounding_multipliers=tables.grounding,
        guarantee_multipliers=tables.guarantee,
        provenance_multipliers=tables.provenance,
    )
