"""Every JSON request body is strict: a string is not a number, a number is not a string or a
date, a bool is not an integer; every integer parameter is ASCII digits (docs/api.md, "Types";
api/fields.py, strict_fields.py).

The body models of every route of every `/v1` router are read from pydantic's core schema: a
number, bool, decimal, date or date-time read in lax mode fails the test unless a validator of
the project's guards it first (``Timestamp``, ``DecimalText``, ``WholeNumber``). Query
parameters, path segments and form fields are text by nature and parsed; an integer among them
takes only ``-?[0-9]+``: Python's ``int()``, and so pydantic's lax mode, reads ``+5``, ``1_0``,
`` 5``, ``5.0`` or Arabic-Indic digits, which the OpenAPI ``integer`` does not spell that way.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter
from pydantic import Field, TypeAdapter, ValidationError

import hartonomous.api.routes as routes_package
from hartonomous.api.fields import ASCII_INTEGER, WholeNumber, integral_number
from hartonomous.api.routes.search import ExampleSearchOptions

# Core schema types pydantic reads loosely in lax mode (`"5"` as 5, `true` as 1, 0 as a time).
_LAX_SCALARS = {"int", "float", "bool", "decimal", "date", "datetime", "time", "timedelta"}
# A validator of ours runs first and lets through only what the JSON Schema says.
_GUARDED = {"function-before", "function-wrap", "function-plain"}


def api_routes() -> Iterator[APIRoute]:
    """Every route of every router in api/routes/."""
    for module in pkgutil.iter_modules(routes_package.__path__):
        loaded = importlib.import_module(f"{routes_package.__name__}.{module.name}")
        for value in vars(loaded).values():
            if isinstance(value, APIRouter):
                yield from (route for route in value.routes if isinstance(route, APIRoute))


def _json_body_routes() -> Iterator[APIRoute]:
    for route in api_routes():
        if route.body_field is not None and not isinstance(
            route.body_field.field_info, params.Form | params.File
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


def _integers(schema: Any, where: str, guard: object = None) -> Iterator[tuple[str, object]]:
    """(field, the before-validator nearest above it) of each integer in a core schema."""
    if isinstance(schema, list):
        for item in schema:
            yield from _integers(item, where, guard)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") in _GUARDED:
        guard = schema.get("function", {}).get("function")
    if schema.get("type") == "int":
        yield where, guard
    for key, value in schema.items():
        if key == "fields" and isinstance(value, dict):
            for name, field in value.items():
                yield from _integers(field, f"{where}.{name}")
        elif isinstance(value, dict | list):
            yield from _integers(value, where, guard)


def test_every_integer_of_every_body_takes_an_integral_number() -> None:
    """JSON Schema 2020-12 (OpenAPI 3.1) counts 5.0 as an integer: every integer field reads
    it as 5 (``integral_number``), and refuses 5.5 as every other non-integer."""
    found = {
        where: guard
        for route in _json_body_routes()
        if route.body_field is not None
        for where, guard in _integers(
            TypeAdapter(route.body_field.field_info.annotation).core_schema,
            f"{sorted(route.methods)[0]} {route.path} body",
        )
    }
    assert {where for where, guard in found.items() if guard is not integral_number} == set()
    # The walk reaches them: search's k, the graph's batch sizes, a plan's seat count …
    assert {
        "POST /v1/search body.k",
        "POST /v1/graph/repair body.batch_size",
        "POST /v1/billing/plans body.included_seat_count",
    } <= set(found), found


@pytest.mark.parametrize(
    ("value", "read"), [(5, 5), (5.0, 5), (2e3, 2000), (-0.0, 0), (5.5, None), (math.inf, None)]
)
def test_a_whole_number_is_an_integer_or_an_integral_number(value: float, read: int | None) -> None:
    adapter = TypeAdapter(WholeNumber)
    if read is None:
        with pytest.raises(ValidationError, match="valid integer"):
            adapter.validate_python(value)
    else:
        assert adapter.validate_python(value) == read
        assert type(adapter.validate_python(value)) is int
    for refused in (True, "5"):
        with pytest.raises(ValidationError):
            adapter.validate_python(refused)


MISSPELT = ["+5", "1_0", " 5", "5 ", "0x10", "5.0", "5e0", "\u0665", "", "-", "five"]


def _parameters(dependant: Dependant) -> Iterator[Any]:
    yield from dependant.query_params
    yield from dependant.path_params
    for sub in dependant.dependencies:
        yield from _parameters(sub)


def _integer_parameters() -> Iterator[tuple[str, Any]]:
    for route in api_routes():
        for parameter in _parameters(route.dependant):
            declared = Annotated[parameter.field_info.annotation, parameter.field_info]
            schema = TypeAdapter(declared).json_schema()
            if "integer" in str(schema):
                # Bounds outside the validator would be kept as unknown keys, not JSON Schema's.
                assert not {"ge", "le", "gt", "lt"} & set(str(schema).split("'")), schema
                yield f"{sorted(route.methods)[0]} {route.path} {parameter.alias}", parameter


def _value(parameter: Any, text: str) -> tuple[Any, list[Any]]:
    value, errors = parameter.validate(text, {}, loc=("query", parameter.alias))
    return value, list(errors or [])


def test_every_integer_parameter_takes_only_ascii_digits() -> None:
    walked = []
    for where, parameter in _integer_parameters():
        walked.append(where)
        value, errors = _value(parameter, "5")
        assert (value, errors) == (5, []), where
        for text in MISSPELT:
            _, errors = _value(parameter, text)
            assert errors, (where, text)
    # The walk reaches the listings' limits, the lineage depth and a dead letter's path id.
    assert {
        "GET /v1/holdings limit",
        "GET /v1/lineage/{identifier} depth",
        "GET /v1/dead-letters/{dead_letter_id} dead_letter_id",
    } <= set(walked), walked


@pytest.mark.parametrize("text", MISSPELT)
def test_a_search_by_example_form_k_takes_only_ascii_digits(text: str) -> None:
    assert ExampleSearchOptions.model_validate({"k": "7"}).k == 7
    with pytest.raises(ValidationError, match=r"ASCII digits|Input should be"):
        ExampleSearchOptions.model_validate({"k": text})


def test_a_negative_integer_is_read_and_bounds_still_apply() -> None:
    adapter = TypeAdapter(Annotated[int, Field(ge=-20), ASCII_INTEGER])
    assert adapter.validate_python("-12") == -12
    assert adapter.validate_python("007") == 7
    with pytest.raises(ValidationError, match="greater than or equal to -20"):
        adapter.validate_python("-21")
    # The bounds stay in the OpenAPI schema as JSON Schema's words.
    assert adapter.json_schema() == {"type": "integer", "minimum": -20}
