"""Every JSON request body is strict: a string is not a number, a number is not a string or a
date, a bool is not an integer (docs/api.md, "Errors"; api/fields.py, strict_fields.py).

The body models of every route of every `/v1` router are read from pydantic's core schema: a
number, bool, decimal, date or date-time read in lax mode fails the test unless a validator of
the project's guards it first (``Timestamp``, ``DecimalText``, ``WholeNumber``). Query
parameters are text by nature and parsed; they are not bodies.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

from fastapi import params
from fastapi.routing import APIRoute, APIRouter
from pydantic import TypeAdapter

import hartonomous.api.routes as routes_package

# Core schema types pydantic reads loosely in lax mode (`"5"` as 5, `true` as 1, 0 as a time).
_LAX_SCALARS = {"int", "float", "bool", "decimal", "date", "datetime", "time", "timedelta"}
# A validator of ours runs first and lets through only what the JSON Schema says.
_GUARDED = {"function-before", "function-wrap", "function-plain"}


def _json_body_routes() -> Iterator[APIRoute]:
    for module in pkgutil.iter_modules(routes_package.__path__):
        loaded = importlib.import_module(f"{routes_package.__name__}.{module.name}")
        for value in vars(loaded).values():
            if not isinstance(value, APIRouter):
                continue
            for route in value.routes:
                if (
                    isinstance(route, APIRoute)
                    and route.body_field is not None
                    and not isinstance(route.body_field.field_info, params.Form | params.File)
                ):
                    yield route


def _lax_scalars(schema: Any, where: str) -> Iterator[str]:
    if isinstance(schema, list):
        for item in schema:
            yield from _lax_scalars(item, where)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in _GUARDED:
        return
    if kind in _LAX_SCALARS and not schema.get("strict"):
        yield f"{where}: {kind}"
    for key, value in schema.items():
        if key == "fields" and isinstance(value, dict):
            for name, field in value.items():
                yield from _lax_scalars(field, f"{where}.{name}")
        elif isinstance(value, dict | list):
            yield from _lax_scalars(value, where)


def test_every_json_body_reads_numbers_bools_and_times_strictly() -> None:
    walked, lax = [], []
    for route in _json_body_routes():
        assert route.body_field is not None
        schema = TypeAdapter(route.body_field.field_info.annotation).core_schema
        where = f"{sorted(route.methods)[0]} {route.path} body"
        walked.append(where)
        lax += list(_lax_scalars(schema, where))
    assert lax == []
    # The walk reaches the bodies (search, tenants, plans, graph …), not an empty list.
    assert len(walked) >= 15, walked


def test_the_walk_sees_a_lax_field() -> None:
    from pydantic import BaseModel

    class Lax(BaseModel):
        size: int

    assert list(_lax_scalars(TypeAdapter(Lax).core_schema, "Lax")) == ["Lax.size: int"]
